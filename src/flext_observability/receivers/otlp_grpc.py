"""OTLP/gRPC: the Trace, Metrics and Logs services on grpc.aio, feeding the same queue.

Handlers take the request as raw bytes (no deserializer), so a valid request is queued
exactly as it arrived, and answer with serialized responses.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status

from flext_observability.models.otlp import OtlpDecodeError, encode_response
from flext_observability.receivers.otlp import OtlpIngest, OtlpThrottled

log = logging.getLogger(__name__)

SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}

Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


def _handler(ingest: OtlpIngest, kind: str) -> Handler:
    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            answer = await ingest.ingest(kind, request, json=False, receiver="otlp_grpc")
        except OtlpDecodeError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except OtlpThrottled as exc:
            code = grpc.StatusCode.RESOURCE_EXHAUSTED if exc.full else grpc.StatusCode.UNAVAILABLE
            details = Status(code=code.value[0], message=str(exc))
            details.details.add().Pack(RetryInfo(retry_delay=Duration(seconds=exc.retry_after)))
            context.set_trailing_metadata(
                (("grpc-status-details-bin", details.SerializeToString()),)
            )
            await context.abort(code, str(exc))
        return encode_response(kind, answer.rejected, answer.message, json=False)

    return export


class OtlpGrpcServer:
    """Started and stopped with the daemon; shares its event loop and queue."""

    def __init__(self, ingest: OtlpIngest, host: str, port: int, max_message_bytes: int) -> None:
        self._ingest = ingest
        self._address = f"{host}:{port}"
        self._max_message = max_message_bytes
        self._server: grpc.aio.Server | None = None
        self.port = port

    async def start(self) -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._max_message),
                ("grpc.max_send_message_length", self._max_message),
            ]
        )
        handlers = [
            grpc.method_handlers_generic_handler(
                service,
                {"Export": grpc.unary_unary_rpc_method_handler(_handler(self._ingest, kind))},
            )
            for kind, service in SERVICES.items()
        ]
        server.add_generic_rpc_handlers(handlers)
        self.port = server.add_insecure_port(self._address)
        await server.start()
        self._server = server
        log.info("otlp grpc receiver listening on %s", self._address)

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop taking calls, let running ones finish within `grace`; safe twice."""
        if self._server is None:
            return
        await self._server.stop(grace)
        self._server = None
