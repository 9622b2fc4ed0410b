"""Where accepted requests enter the queue: admission to the metric store, then the put.

Receivers in this process call `Intake.put`; with ingest workers (`server.workers`), the
workers' requests arrive here through `workers.ipc` and take the same path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from flext_observability.models.errors import ItemError
from flext_observability.models.wire import MetricsDigest, unpack_digest
from flext_observability.pipeline.queue import Queue, Signal

NATIVE_JSON = "native-json"
METRICS_DIGEST = "metrics-digest"
OTLP_PROTOBUF = "otlp-pb"

Admit = Callable[[MetricsDigest], list[ItemError]]
SERIES_LIMIT = "series_limit"


class RecordsAdmission(NamedTuple):
    """How the state native alerts or health reports go to admits them (its limit)."""

    reason: str  # what refused_items_total counts
    # records -> the items the state cannot take; the others are counted as held
    admit: Callable[[list[dict[str, Any]]], list[ItemError]]
    # records admitted that could not be queued after all: no longer counted
    release: Callable[[list[dict[str, Any]]], None]


class Inadmissible(Exception):
    """Items the state they go to could not hold (the Prometheus exporter: type conflict,
    series limit; the health tracker or the held alerts: their limit); nothing was queued.
    `reason` is what refused_items_total counts."""

    def __init__(self, errors: list[ItemError], reason: str = SERIES_LIMIT) -> None:
        super().__init__("; ".join(f"{e.index}: {e.message}" for e in errors))
        self.errors = errors
        self.reason = reason


class Intake:
    """`put()` as the queue's, with native metrics admitted first. Raises Inadmissible,
    QueueFull or QueueClosed; returns once the request is durable."""

    def __init__(
        self, queue: Queue, admit_metrics: Admit,
        admit_records: dict[Signal, RecordsAdmission] | None = None,
    ) -> None:
        """`admit_records`: per signal of native JSON records, their admission."""
        self.queue = queue
        self._admit_metrics = admit_metrics
        self._admit_records = admit_records or {}

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
        elif encoding == NATIVE_JSON and signal in self._admit_records:
            admission = self._admit_records[signal]
            records = orjson.loads(payload)
            errors = admission.admit(records)
            if errors:
                raise Inadmissible(errors, admission.reason)
            try:
                return await self.queue.put(signal, encoding, payload, items, decoded)
            except BaseException:
                admission.release(records)
                raise
        return await self.queue.put(signal, encoding, payload, items, decoded)
