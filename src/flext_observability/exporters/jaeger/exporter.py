"""The Jaeger exporter's bare push: queued OTLP trace requests to Jaeger's OTLP receiver.

Spans are queued as serialized `ExportTraceServiceRequest`s. Serialized messages of one
type concatenate into a valid merged message (repeated fields append), so a batch of
records is `b"".join(payloads)` and goes out with no decode or encode: over OTLP/gRPC as
raw bytes of a unary call (no serializer), or over OTLP/HTTP as a protobuf POST body.
Failures are left to `retry.classify`; retries to the shared helper.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from flext_observability.exporters.jaeger.config import JaegerExporterConfig
from flext_observability.pipeline.exporter import QueueExporter
from flext_observability.pipeline.queue import Queue, Record
from flext_observability.signals import Signal
from flext_observability.telemetry import SelfTelemetry
from flext_observability.tls import client_ssl_context, grpc_channel_credentials

log = logging.getLogger(__name__)

NAME = "jaeger"
TRACE_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
OTLP_GRPC_PORT = 4317
PROTOBUF = "application/x-protobuf"


def grpc_target(endpoint: str) -> tuple[str, bool]:
    """`http://jaeger:4317` -> ("jaeger:4317", plaintext); `https://...` -> TLS."""
    parts = urlsplit(endpoint)
    return f"{parts.hostname}:{parts.port or OTLP_GRPC_PORT}", parts.scheme == "https"


def http_traces_url(endpoint: str) -> str:
    """`http://jaeger:4318` -> `http://jaeger:4318/v1/traces` (kept when already there)."""
    url = endpoint.rstrip("/")
    return url if url.endswith("/v1/traces") else f"{url}/v1/traces"


class _GrpcTransport:
    def __init__(self, config: JaegerExporterConfig) -> None:
        self._target, self._tls = grpc_target(config.endpoint or "")
        self._tls_config = config.tls
        self._metadata = tuple((k.lower(), v) for k, v in config.headers.items())
        gzipped = config.compression == "gzip"
        self._compression = grpc.Compression.Gzip if gzipped else grpc.Compression.NoCompression
        self._reconnect_ms = int(config.retry.max_interval * 1000)
        self._timeout = config.timeout
        self._channel: grpc.aio.Channel | None = None
        self._export: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] | None = None

    def _connect(self) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        # gRPC's own reconnect backoff reaches 120 s by default; keep it within our retry
        # interval so that a downstream that comes back is used on the next retry.
        options = [
            ("grpc.initial_reconnect_backoff_ms", min(1000, self._reconnect_ms)),
            ("grpc.min_reconnect_backoff_ms", min(1000, self._reconnect_ms)),
            ("grpc.max_reconnect_backoff_ms", self._reconnect_ms),
        ]
        if self._tls:
            self._channel = grpc.aio.secure_channel(
                self._target, grpc_channel_credentials(self._tls_config), options,
                self._compression,
            )
        else:
            self._channel = grpc.aio.insecure_channel(self._target, options, self._compression)
        return self._channel.unary_unary(
            TRACE_EXPORT_METHOD, request_serializer=None, response_deserializer=None
        )

    async def send(self, payload: bytes) -> bytes:
        if self._export is None:
            self._export = self._connect()
        return await self._export(payload, timeout=self._timeout, metadata=self._metadata)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._export = None


class _HttpTransport:
    def __init__(self, config: JaegerExporterConfig) -> None:
        self._url = http_traces_url(config.endpoint or "")
        self._headers = {**config.headers, "Content-Type": PROTOBUF}
        self._gzip = config.compression == "gzip"
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._timeout = config.timeout
        self._verify = client_ssl_context(config.tls)
        self._client: httpx.AsyncClient | None = None

    async def send(self, payload: bytes) -> bytes:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, verify=self._verify)
        if self._gzip:
            payload = await asyncio.to_thread(gzip.compress, payload, 1)
        response = await self._client.post(self._url, content=payload, headers=self._headers)
        response.raise_for_status()
        return response.content

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class JaegerExporter:
    """Spans from the queue to Jaeger: the bare `push` wrapped by the shared QueueExporter."""

    def __init__(
        self, config: JaegerExporterConfig, queue: Queue, telemetry: SelfTelemetry
    ) -> None:
        if not config.endpoint:
            raise ValueError("exporters.jaeger.endpoint is not set")
        self.name = NAME
        self.config = config
        self._transport = (
            _GrpcTransport(config) if config.protocol == "grpc" else _HttpTransport(config)
        )
        self.helper = QueueExporter(
            NAME, queue, [Signal.SPANS], self.push, telemetry,
            batch_max_items=config.batch_max_items,
            batch_timeout=config.batch_timeout,
            num_senders=config.num_senders,
            retry=config.retry,
            timeout=config.timeout,
        )

    async def push(self, records: list[Record]) -> int:
        """Send the records as one request; the number of spans Jaeger refused."""
        answer = await self._transport.send(b"".join(r.payload for r in records))
        try:
            partial = ExportTraceServiceResponse.FromString(answer).partial_success
        except DecodeError:
            log.warning("%s: %s accepted the spans with an unreadable answer (%d bytes)",
                        NAME, self.config.endpoint, len(answer))
            return 0
        if partial.rejected_spans:
            log.warning("%s: %s refused %d spans: %s", NAME, self.config.endpoint,
                        partial.rejected_spans, partial.error_message or "(no message)")
        return partial.rejected_spans

    async def start(self) -> None:
        await self.helper.start()

    async def shutdown(self, deadline: float) -> None:
        await self.helper.shutdown(deadline)
        await self._transport.close()

    def state(self) -> dict[str, Any]:
        return self.helper.state()


def create(
    config: JaegerExporterConfig, queue: Queue, telemetry: SelfTelemetry
) -> JaegerExporter | None:
    """The registry's factory: an exporter when `endpoint` is set."""
    return JaegerExporter(config, queue, telemetry) if config.endpoint else None
