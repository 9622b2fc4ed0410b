"""Where accepted requests enter the queue: admission to the metric store, then the put.

Receivers in this process call `Intake.put`; with ingest workers (`server.workers`), the
workers' requests arrive here through `workers.ipc` and take the same path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flext_observability.models.errors import ItemError
from flext_observability.models.wire import MetricsDigest, unpack_digest
from flext_observability.pipeline.queue import Queue, Signal

NATIVE_JSON = "native-json"
METRICS_DIGEST = "metrics-digest"
OTLP_PROTOBUF = "otlp-pb"

Admit = Callable[[MetricsDigest], list[ItemError]]


class Inadmissible(Exception):
    """Native metrics the Prometheus exporter could not hold (type conflict, series limit);
    nothing was queued."""

    def __init__(self, errors: list[ItemError]) -> None:
        super().__init__("; ".join(f"{e.index}: {e.message}" for e in errors))
        self.errors = errors


class Intake:
    """`put()` as the queue's, with native metrics admitted first. Raises Inadmissible,
    QueueFull or QueueClosed; returns once the request is durable."""

    def __init__(self, queue: Queue, admit_metrics: Admit) -> None:
        self.queue = queue
        self._admit_metrics = admit_metrics

    async def put(
        self, signal: Signal, encoding: str, payload: bytes, items: int, decoded: Any = None
    ) -> int:
        """`decoded`: native metrics' digest, unpacked from the payload when not given."""
        if encoding == METRICS_DIGEST:
            if decoded is None:
                decoded = unpack_digest(payload)
            errors = self._admit_metrics(decoded)
            if errors:
                raise Inadmissible(errors)
        return await self.queue.put(signal, encoding, payload, items, decoded)
