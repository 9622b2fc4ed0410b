"""The OTLP exporter: queued spans, metrics and logs to an OTLP receiver, gRPC or HTTP.

Everything is queued as serialized `Export*ServiceRequest`s but native metrics (converted
once, in queue order, by `native_metrics`). Serialized messages of one type concatenate
into a valid merged message (repeated fields append), so a batch of records is
`b"".join(payloads)` and goes out with no decode or encode: over OTLP/gRPC as the raw
bytes of a unary call (no serializer), over OTLP/HTTP as a protobuf POST body.

Each signal of an entry is read from the queue with its own cursor (`<name>/<signal>`)
by its own `QueueExporter`: a downstream that refuses one signal for good (no logs
pipeline) or for a while neither blocks nor repeats the others. The self-metrics of all
of them carry the entry's name; `exporter_up` is 1 while every signal is delivered.
Failures are classified by `pipeline.exporter.classify`, retried by the shared helper.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from flext_observability.exporters.otlp.config import OtlpExporterConfig, OtlpSignal
from flext_observability.exporters.otlp.native_metrics import NativeMetricsToOtlp
from flext_observability.models.wire import MetricsDigest, unpack_digest
from flext_observability.pipeline.exporter import QueueExporter
from flext_observability.pipeline.intake import METRICS_DIGEST, OTLP_PROTOBUF
from flext_observability.pipeline.queue import Queue, Record
from flext_observability.signals import Signal
from flext_observability.telemetry import SelfTelemetry
from flext_observability.tls import client_ssl_context, grpc_channel_credentials

log = logging.getLogger(__name__)

NAME = "otlp"

OTLP_GRPC_PORT = 4317
PROTOBUF = "application/x-protobuf"
CONVERT_ERROR = "convert_error"


@dataclass(frozen=True, slots=True)
class _Service:
    queue_signal: Signal
    grpc_method: str
    response: type[ExportTraceServiceResponse | ExportMetricsServiceResponse
                   | ExportLogsServiceResponse]
    rejected_field: str


SERVICES: dict[OtlpSignal, _Service] = {
    "traces": _Service(Signal.SPANS, "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                       ExportTraceServiceResponse, "rejected_spans"),
    "metrics": _Service(Signal.METRICS,
                        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                        ExportMetricsServiceResponse, "rejected_data_points"),
    "logs": _Service(Signal.LOGS, "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                     ExportLogsServiceResponse, "rejected_log_records"),
}


def grpc_target(endpoint: str) -> tuple[str, bool]:
    """`http://otelcol:4317` -> ("otelcol:4317", plaintext); `https://...` -> TLS."""
    parts = urlsplit(endpoint)
    return f"{parts.hostname}:{parts.port or OTLP_GRPC_PORT}", parts.scheme == "https"


def http_url(endpoint: str, signal: OtlpSignal) -> str:
    """`http://otelcol:4318` -> `http://otelcol:4318/v1/traces` (kept when already there),
    as OTEL_EXPORTER_OTLP_ENDPOINT is read."""
    url = endpoint.rstrip("/")
    path = f"/v1/{signal}"
    return url if url.endswith(path) else url + path


class _GrpcTransport:
    """One channel for every signal of the entry. The calls are blocking ones, made by a
    pool of threads (`num_senders` a signal): gRPC compresses a message in the thread that
    sends it, and a blocking call releases the GIL meanwhile, so gzip runs beside the event
    loop instead of on it (`python -m bench e2e`: with grpc.aio it took 2.7 µs a span of
    the loop's time)."""

    def __init__(self, config: OtlpExporterConfig) -> None:
        self._target, self._tls = grpc_target(config.endpoint)
        self._tls_config = config.tls
        self._metadata = tuple((k.lower(), v) for k, v in config.headers.items())
        gzipped = config.compression == "gzip"
        self._compression = grpc.Compression.Gzip if gzipped else grpc.Compression.NoCompression
        self._reconnect_ms = int(config.retry.max_interval * 1000)
        self._timeout = config.timeout
        self._threads = config.num_senders * len(config.signals)
        self._thread_prefix = f"export-{config.name}"
        self._channel: grpc.Channel | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._calls: dict[str, grpc.UnaryUnaryMultiCallable[bytes, bytes]] = {}

    def _connect(self) -> grpc.Channel:
        # gRPC's own reconnect backoff reaches 120 s by default; keep it within our retry
        # interval so that a downstream that comes back is used on the next retry.
        options = [
            ("grpc.initial_reconnect_backoff_ms", min(1000, self._reconnect_ms)),
            ("grpc.min_reconnect_backoff_ms", min(1000, self._reconnect_ms)),
            ("grpc.max_reconnect_backoff_ms", self._reconnect_ms),
        ]
        if self._tls:
            return grpc.secure_channel(
                self._target, grpc_channel_credentials(self._tls_config), options,
                self._compression,
            )
        return grpc.insecure_channel(self._target, options, self._compression)

    async def send(self, signal: OtlpSignal, payload: bytes) -> bytes:
        if self._channel is None or self._pool is None:
            self._channel = self._connect()
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix=self._thread_prefix)
        call = self._calls.get(signal)
        if call is None:
            call = self._calls[signal] = self._channel.unary_unary(
                SERVICES[signal].grpc_method, request_serializer=None,
                response_deserializer=None,
            )
        attempt = partial(call, payload, timeout=self._timeout, metadata=self._metadata)
        answer: bytes = await asyncio.get_running_loop().run_in_executor(self._pool, attempt)
        return answer

    async def close(self) -> None:
        channel, pool = self._channel, self._pool
        self._channel = self._pool = None
        self._calls.clear()
        if channel is not None:
            # Ends the calls still in flight (CANCELLED), so their threads return at once.
            channel.close()
        if pool is not None:
            await asyncio.to_thread(pool.shutdown)


class _HttpTransport:
    """One client for every signal; `<endpoint>/v1/<signal>`."""

    def __init__(self, config: OtlpExporterConfig) -> None:
        self._endpoint = config.endpoint
        self._headers = {**config.headers, "Content-Type": PROTOBUF}
        self._gzip = config.compression == "gzip"
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._timeout = config.timeout
        self._verify = client_ssl_context(config.tls)
        self._client: httpx.AsyncClient | None = None

    async def send(self, signal: OtlpSignal, payload: bytes) -> bytes:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, verify=self._verify)
        if self._gzip:
            payload = await asyncio.to_thread(gzip.compress, payload, 1)
        response = await self._client.post(
            http_url(self._endpoint, signal), content=payload, headers=self._headers
        )
        response.raise_for_status()
        return response.content

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def cursor_name(name: str, signal: OtlpSignal) -> str:
    """The queue cursor of one signal of an entry."""
    return f"{name}/{signal}"


class OtlpExporter:
    """One `exporters.otlp` entry: a QueueExporter per signal over one transport."""

    def __init__(
        self, config: OtlpExporterConfig, queue: Queue, telemetry: SelfTelemetry
    ) -> None:
        self.config = config
        self.name = config.name
        self._telemetry = telemetry
        self._transport = (
            _GrpcTransport(config) if config.protocol == "grpc" else _HttpTransport(config)
        )
        self._native = NativeMetricsToOtlp()
        self.helpers: dict[OtlpSignal, QueueExporter] = {}
        for signal in config.signals:
            self.helpers[signal] = QueueExporter(
                cursor_name(config.name, signal), queue, [SERVICES[signal].queue_signal],
                partial(self.push, signal), telemetry,
                batch_max_items=config.batch_max_items,
                batch_timeout=config.batch_timeout,
                num_senders=config.num_senders,
                retry=config.retry,
                timeout=config.timeout,
                label=config.name,
                report_up=self._report_up,
                prepare=self._native_as_otlp if signal == "metrics" else None,
            )

    async def push(self, signal: OtlpSignal, records: list[Record]) -> int:
        """Send the records as one request; the number of items the downstream refused."""
        payload = b"".join(r.payload for r in records)
        if not payload:
            return 0
        answer = await self._transport.send(signal, payload)
        service = SERVICES[signal]
        try:
            success = service.response.FromString(answer).partial_success
        except DecodeError:
            log.warning("%s: %s accepted the %s with an unreadable answer (%d bytes)",
                        self.name, self.config.endpoint, signal, len(answer))
            return 0
        rejected: int = getattr(success, service.rejected_field)
        if rejected:
            log.warning("%s: %s refused %d %s items: %s", self.name, self.config.endpoint,
                        rejected, signal, success.error_message or "(no message)")
        return rejected

    def _native_as_otlp(self, batch: list[Record]) -> list[Record]:
        """Native metrics records converted (once, in queue order); OTLP ones as they are."""
        converted = []
        for record in batch:
            if record.encoding != METRICS_DIGEST:
                converted.append(record)
                continue
            try:
                digest = (record.decoded if isinstance(record.decoded, MetricsDigest)
                          else unpack_digest(record.payload))
                payload = self._native.convert(digest)
            except Exception:
                # A queued digest was validated at intake: this is a bug, not bad input.
                log.exception("%s: native metrics record %d not converted", self.name,
                              record.seq)
                self._telemetry.dropped.labels(self.name, CONVERT_ERROR).inc(record.items)
                converted.append(replace(record, payload=b"", items=0, decoded=None))
                continue
            converted.append(
                replace(record, encoding=OTLP_PROTOBUF, payload=payload, decoded=None)
            )
        return converted

    def _report_up(self) -> None:
        up = all(helper.delivery.up for helper in self.helpers.values())
        self._telemetry.exporter_up.labels(self.name).set(1 if up else 0)

    async def start(self) -> None:
        for helper in self.helpers.values():
            await helper.start()

    async def shutdown(self, deadline: float) -> None:
        await asyncio.gather(*(helper.shutdown(deadline) for helper in self.helpers.values()))
        await self._transport.close()

    def state(self) -> dict[str, Any]:
        """The entry's state (down when any signal is), and each signal's."""
        signals = {signal: helper.state() for signal, helper in self.helpers.items()}
        states = {s["state"] for s in signals.values()}
        errors = sorted(
            (s for s in signals.values() if s["last_error_at"] is not None),
            key=lambda s: s["last_error_at"],
        )
        return {
            "state": next(s for s in ("down", "stopped", "up") if s in states),
            "last_error": errors[-1]["last_error"] if errors else None,
            "last_error_at": errors[-1]["last_error_at"] if errors else None,
            "in_flight_batches": sum(s["in_flight_batches"] for s in signals.values()),
            "signals": signals,
        }


def create(
    entries: list[OtlpExporterConfig], queue: Queue, telemetry: SelfTelemetry
) -> list[OtlpExporter]:
    """The registry's factory: an OtlpExporter per `exporters.otlp` entry."""
    return [OtlpExporter(entry, queue, telemetry) for entry in entries]
