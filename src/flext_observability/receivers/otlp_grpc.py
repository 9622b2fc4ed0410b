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

from flext_observability.config import Config
from flext_observability.models.otlp import OtlpDecodeError, encode_response
from flext_observability.processors.limits import MEMORY_LIMIT, Gate, Throttled
from flext_observability.receivers.auth import MESSAGE, Authenticator
from flext_observability.receivers.component import Receiver, ReceiverContext
from flext_observability.receivers.otlp import OtlpIngest, OtlpThrottled
from flext_observability.receivers.otlp_http import apply_to
from flext_observability.refusals.grpc import recorded
from flext_observability.refusals.log import RefusalLog
from flext_observability.routes import OTLP
from flext_observability.signals import OtlpKind
from flext_observability.startup import StartupError
from flext_observability.tls import TlsServerConfig, grpc_server_certificates

log = logging.getLogger(__name__)

SERVICES: dict[OtlpKind, str] = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}

Context = grpc.aio.ServicerContext[bytes, bytes]
Handler = Callable[[bytes, Context], Awaitable[bytes]]
GRPC_HEADROOM = 1 << 20


def _authorization(context: Context) -> bytes | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value.encode() if isinstance(value, str) else value
    return None


def _handler(
    ingest: OtlpIngest, kind: OtlpKind, authenticator: Authenticator | None, max_bytes: int
) -> Handler:
    async def export(request: bytes, context: Context) -> bytes:
        tenant = None
        if authenticator is not None:
            tenant = authenticator.tenant(_authorization(context))
            if tenant is None:
                authenticator.refused(OTLP[kind].signal)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, MESSAGE)
        if len(request) > max_bytes:
            ingest.count_refused(kind, "too_large")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"message of {len(request)} bytes is larger than "
                f"server.grpc_max_message_bytes={max_bytes}",
            )
        try:
            answer = await ingest.ingest(
                kind, request, json=False, receiver="otlp_grpc", tenant=tenant
            )
        except OtlpDecodeError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except OtlpThrottled as exc:
            code = grpc.StatusCode.RESOURCE_EXHAUSTED if exc.full else grpc.StatusCode.UNAVAILABLE
            await _abort_retryable(context, code, str(exc), exc.retry_after)
        return encode_response(kind, answer.rejected, answer.message, json=False)

    return export


async def _abort_retryable(
    context: Context, code: grpc.StatusCode, message: str, retry_after: int
) -> None:
    """End the call with `code` and a RetryInfo detail, as OTLP clients expect."""
    details = Status(code=code.value[0], message=message)
    details.details.add().Pack(RetryInfo(retry_delay=Duration(seconds=retry_after)))
    context.set_trailing_metadata((("grpc-status-details-bin", details.SerializeToString()),))
    await context.abort(code, message)


def _gated(handler: Handler, gate: Gate, signal: str) -> Handler:
    """`handler` behind the gate: UNAVAILABLE while memory is limited, RESOURCE_EXHAUSTED
    while the queue is full or past limits.max_concurrent_requests calls in flight; all
    with RetryInfo."""

    async def export(request: bytes, context: Context) -> bytes:
        try:
            gate.enter(signal)
        except Throttled as exc:
            code = (
                grpc.StatusCode.UNAVAILABLE
                if exc.reason == MEMORY_LIMIT
                else grpc.StatusCode.RESOURCE_EXHAUSTED
            )
            await _abort_retryable(context, code, exc.message, exc.retry_after)
        try:
            return await handler(request, context)
        finally:
            gate.leave()

    return export


class OtlpGrpcServer:
    """Started and stopped with the daemon; shares its event loop and queue. With an
    `authenticator`, every call needs `authorization: Bearer <token>` metadata; with a
    certificate in `tls`, the port serves TLS only. Every call passes the `gate`; gRPC
    itself refuses calls past twice its limit before reading them (maximum_concurrent_rpcs),
    a backstop against floods faster than the handlers start."""

    def __init__(
        self,
        ingest: OtlpIngest,
        host: str,
        port: int,
        max_message_bytes: int,
        authenticator: Authenticator | None = None,
        tls: TlsServerConfig | None = None,
        *,
        gate: Gate,
        refusals: RefusalLog | None = None,
    ) -> None:
        self._ingest = ingest
        self._refusals = refusals
        self._gate = gate
        self._address = f"{host}:{port}"
        self._max_message = max_message_bytes
        self._authenticator = authenticator
        self._tls = tls or TlsServerConfig()
        self._certificates = grpc_server_certificates(self._tls)
        self._server: grpc.aio.Server | None = None
        self.port = port

    async def start(self) -> None:
        # gRPC itself refuses (uncounted, unnamed) only what is far past the limit; the
        # handlers refuse the rest, naming the key, and count it.
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length",
                 max(2 * self._max_message, self._max_message + GRPC_HEADROOM)),
                ("grpc.max_send_message_length", self._max_message),
                # Without this, a second process binds the same port and takes half the calls.
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=2 * self._gate.max_in_flight,
        )
        handlers = [
            grpc.method_handlers_generic_handler(
                service, {"Export": grpc.unary_unary_rpc_method_handler(self._export(kind))},
            )
            for kind, service in SERVICES.items()
        ]
        server.add_generic_rpc_handlers(handlers)
        certificates = self._certificates
        try:
            if certificates is None:
                port = server.add_insecure_port(self._address)
            else:
                port = server.add_secure_port(self._address, certificates.credentials)
        except RuntimeError:
            port = 0
        if port == 0:
            raise StartupError(
                f"cannot listen on {self._address} (server.grpc_port): the port is taken "
                "or the address is not local"
            )
        self.port = port
        await server.start()
        self._server = server
        log.info("otlp grpc receiver listening on %s%s", self._address,
                 "" if certificates is None else " (TLS)")

    def load_certificates(self, tls: TlsServerConfig) -> None:
        """A reload: the certificate files read again, for the next connections (the
        listener and the connections open stay)."""
        if self._certificates is not None:
            self._certificates.load(tls)

    def _export(self, kind: OtlpKind) -> Handler:
        """The call's handler: authentication and ingestion, behind the gate, recorded."""
        export = _gated(
            _handler(self._ingest, kind, self._authenticator, self._max_message),
            self._gate, OTLP[kind].signal.value,
        )
        if self._refusals is None:
            return export
        authenticator = self._authenticator

        def tenant_of(context: Context) -> str | None:
            return None if authenticator is None else authenticator.tenant(_authorization(context))

        return recorded(export, self._refusals, f"/v1/{kind}", tenant_of)

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop taking calls, let running ones finish within `grace`; safe twice."""
        if self._server is None:
            return
        await self._server.stop(grace)
        self._server = None


NAME = "otlp_grpc"


def create(config: Config, context: ReceiverContext) -> Receiver | None:
    """OTLP/gRPC on `server.grpc_port`, behind `context.grpc_gate`; served by the collector
    process only (None in an ingest worker)."""
    if context.local is None:
        return None
    ingest = OtlpIngest(context.put, context.telemetry, accepts_logs=config.exports("logs"),
                        limits=config.limits, accepts_spans=config.accepts_spans())
    server = config.server
    listener = OtlpGrpcServer(
        ingest, server.host, server.grpc_port, server.grpc_max_message_bytes,
        context.authenticator, server.tls, gate=context.grpc_gate,
        refusals=context.telemetry.refusals,
    )

    def apply(new: Config) -> None:
        apply_to(ingest, new)
        tls = new.server.tls
        if tls.cert_file is not None and tls.key_file is not None:
            listener.load_certificates(tls)

    return Receiver(NAME, listener=listener, apply=apply)
