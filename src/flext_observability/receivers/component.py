"""What a receiver is to the builder: its HTTP routes or a listener of its own, and what a
reload changes in it; and what the receivers share (`ReceiverContext`).

A receiver's factory (`create(config, context)` in its module, one line in
`components.RECEIVERS`) returns its `Receiver`, or None when the config or the process
leaves it off: the push API and OTLP/gRPC are served by the collector process only, so
in an ingest worker (`context.local` is None) they are not built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import APIRouter
from prometheus_client import CollectorRegistry

from flext_observability.config import Config
from flext_observability.exporters.prometheus.exporter import PrometheusExporter
from flext_observability.exporters.prometheus.store import MetricStore
from flext_observability.pipeline.consumer import Checkpoints
from flext_observability.pipeline.queue import Queue
from flext_observability.processors.limits import Gate
from flext_observability.receivers.auth import Authenticator
from flext_observability.telemetry import SelfTelemetry


class Listener(Protocol):
    """A server of a receiver's own (OTLP/gRPC): started after the sinks, stopped first."""

    port: int

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...


def _unchanged(_: Config) -> None:
    """A receiver with nothing a reload changes."""


@dataclass(frozen=True, slots=True)
class Receiver:
    """A built receiver: `router`, its routes on the HTTP app (the collector's, an ingest
    worker's); `listener`, a server of its own; `apply`, what a reloaded config changes
    (the item limits, which signals are taken)."""

    name: str
    router: APIRouter | None = None
    listener: Listener | None = None
    apply: Callable[[Config], None] = _unchanged


@dataclass(frozen=True, slots=True)
class LocalParts:
    """The collector process's parts that a receiver served there alone uses (the push
    API: the queue, the metric store and the exporter that applies pushes, the registry
    its groups are exposed in, the checkpoints that keep them)."""

    queue: Queue
    store: MetricStore
    registry: CollectorRegistry
    prometheus: PrometheusExporter
    checkpoints: Checkpoints


@dataclass(frozen=True, slots=True)
class ReceiverContext:
    """What the receivers share: `put` (the intake, or from an ingest worker the collector
    process), the self-telemetry, authentication (None when off), the gate of the
    receivers that are not behind the HTTP app's (gRPC), and `local`, the collector
    process's parts (None in an ingest worker)."""

    put: Callable[..., Any]
    telemetry: SelfTelemetry
    authenticator: Authenticator | None
    grpc_gate: Gate
    local: LocalParts | None = None
