"""The debug exporter: one structured log line per batch, as the OpenTelemetry Collector's
`debug` exporter does at `basic` verbosity (signal, items, OTLP resources), and nothing
else. It reads the queue like any exporter and acknowledges what it logged."""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flext_observability.exporters.debug.config import DebugExporterConfig
from flext_observability.pipeline.exporter import QueueExporter
from flext_observability.pipeline.intake import OTLP_PROTOBUF
from flext_observability.pipeline.queue import Queue, Record
from flext_observability.settings import RetryConfig
from flext_observability.signals import Signal
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)

NAME = "debug"
BATCH_MAX_ITEMS = 8192
BATCH_TIMEOUT = 0.2
_REQUESTS: dict[Signal, tuple[type[Message], str]] = {
    Signal.SPANS: (ExportTraceServiceRequest, "resource_spans"),
    Signal.METRICS: (ExportMetricsServiceRequest, "resource_metrics"),
    Signal.LOGS: (ExportLogsServiceRequest, "resource_logs"),
}


def resources(record: Record) -> int:
    """The OTLP resources of a record (0 for a native one, which has none)."""
    request = _REQUESTS.get(record.signal)
    if record.encoding != OTLP_PROTOBUF or request is None:
        return 0
    kind, field = request
    try:
        return len(getattr(kind.FromString(record.payload), field))
    except DecodeError:
        return 0


class DebugExporter:
    """Logs each batch it reads; a `QueueExporter` with a push that never fails."""

    def __init__(
        self, config: DebugExporterConfig, queue: Queue, telemetry: SelfTelemetry
    ) -> None:
        self.name = NAME
        self.config = config
        self.helper = QueueExporter(
            NAME, queue, [Signal(s) for s in config.signals], self.push, telemetry,
            batch_max_items=BATCH_MAX_ITEMS, batch_timeout=BATCH_TIMEOUT, num_senders=1,
            retry=RetryConfig(), timeout=BATCH_TIMEOUT,
        )

    async def push(self, records: list[Record]) -> int:
        by_signal: dict[Signal, list[Record]] = {}
        for record in records:
            by_signal.setdefault(record.signal, []).append(record)
        for signal, batch in by_signal.items():
            log.info(
                "debug exporter: signal=%s items=%d resources=%d records=%d",
                signal.value, sum(r.items for r in batch), sum(map(resources, batch)),
                len(batch),
            )
        return 0

    async def start(self) -> None:
        await self.helper.start()

    async def shutdown(self, deadline: float) -> None:
        await self.helper.shutdown(deadline)

    def state(self) -> dict[str, Any]:
        return self.helper.state()


def create(
    config: DebugExporterConfig, queue: Queue, telemetry: SelfTelemetry
) -> DebugExporter | None:
    """The registry's factory: an exporter when `enabled`."""
    return DebugExporter(config, queue, telemetry) if config.enabled else None
