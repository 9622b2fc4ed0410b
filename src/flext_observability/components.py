"""The component registry: every receiver, queue kind and exporter by its name, one line
each.

An exporter's factory takes the whole config and what the graph shares (`ExporterContext`)
and returns its exporters: none when the config leaves it off, one, or one per entry of a
list (`exporters.otlp`). The builder (`builder.py`) makes every entry's exporter and the
collector runs them as its sinks: adding an exporter is its folder (`exporters/<name>/`:
config model, `create`, logic) and one line here.

A receiver's factory (`receivers.component`) takes the config and what the receivers share
(`ReceiverContext`) and returns the receiver, or None when it is off (or not served in this
process); `builder.build_ingest` makes them all, for the collector process and for an
ingest worker alike. A queue kind's factory takes the `queue` section and the registry its
self-metrics go to; `queue.kind` picks one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from flext_observability.config import Config
from flext_observability.exporters.alertmanager import exporter as alertmanager
from flext_observability.exporters.alertmanager.state import AlertState
from flext_observability.exporters.debug import exporter as debug
from flext_observability.exporters.jaeger import exporter as jaeger
from flext_observability.exporters.otlp import exporter as otlp
from flext_observability.exporters.prometheus_remote_write import exporter as remote_write
from flext_observability.exporters.prometheus_remote_write.exporter import SampleSource
from flext_observability.pipeline.config import QueueConfig
from flext_observability.pipeline.exporter import Exporter
from flext_observability.pipeline.kafka.queue import build_kafka_queue
from flext_observability.pipeline.queue import MemoryQueue, Queue, SqliteQueue
from flext_observability.receivers import native, otlp_grpc, otlp_http
from flext_observability.receivers.component import Receiver, ReceiverContext
from flext_observability.receivers.pushgateway import receiver as pushgateway
from flext_observability.telemetry import SelfTelemetry


@dataclass(frozen=True, slots=True)
class ExporterContext:
    """What exporters share: the queue they read, the self-telemetry, the alerts' state,
    and the held series (what /metrics shows: the metric store, the services' health)."""

    queue: Queue
    telemetry: SelfTelemetry
    alerts: AlertState
    series: Sequence[SampleSource]


# A factory's exporters: none when the config leaves it off, several for a list of entries.
ExporterFactory = Callable[[Config, ExporterContext], list[Exporter]]


def _one(exporter: Exporter | None) -> list[Exporter]:
    return [] if exporter is None else [exporter]


EXPORTERS: dict[str, ExporterFactory] = {
    jaeger.NAME: lambda c, x: _one(jaeger.create(c.exporters.jaeger, x.queue, x.telemetry)),
    otlp.NAME: lambda c, x: list(otlp.create(c.exporters.otlp, x.queue, x.telemetry)),
    alertmanager.NAME: lambda c, x: _one(alertmanager.create(
        c.exporters.alertmanager, x.alerts, x.telemetry)),
    remote_write.NAME: lambda c, x: _one(remote_write.create(
        c.exporters.prometheus_remote_write, x.series, x.telemetry)),
    debug.NAME: lambda c, x: _one(debug.create(c.exporters.debug, x.queue, x.telemetry)),
}


ReceiverFactory = Callable[[Config, ReceiverContext], Receiver | None]

RECEIVERS: dict[str, ReceiverFactory] = {
    native.RECEIVER: native.create,
    otlp_http.NAME: otlp_http.create,
    otlp_grpc.NAME: otlp_grpc.create,
    pushgateway.NAME: pushgateway.create,
}

QueueFactory = Callable[[QueueConfig, CollectorRegistry], Queue]

QUEUES: dict[str, QueueFactory] = {
    "disk": lambda q, _: SqliteQueue(q.path, q.max_items, q.max_bytes, q.retry_after_seconds,
                                     q.signal_share, fsync=q.fsync),
    "memory": lambda q, _: MemoryQueue(q.max_items, q.max_bytes, q.retry_after_seconds,
                                       q.signal_share),
    "kafka": lambda q, registry: build_kafka_queue(q.kafka, q.path, q.max_items, q.max_bytes,
                                                   q.retry_after_seconds, registry),
}
