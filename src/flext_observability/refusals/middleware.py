"""The HTTP receivers' recorder: notes each POST's refusals (`log.recording()`), and when
the answer is sent keeps one `Refusal` with the tenant, the status and the first field
errors read from the answer's body (never the request's)."""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from flext_observability.processors.limits import INGEST_ROUTES
from flext_observability.receivers.auth import request_tenant
from flext_observability.refusals.log import (
    MAX_ERRORS,
    error_entry,
    recording,
    refusal_of,
)
from flext_observability.telemetry import SelfTelemetry

# Answers larger than this are not read for errors (an error body is a few KiB at most).
MAX_ANSWER_READ = 256 * 1024
_OTLP_RESPONSES: dict[str, type[Message]] = {
    "/v1/traces": ExportTraceServiceResponse,
    "/v1/metrics": ExportMetricsServiceResponse,
    "/v1/logs": ExportLogsServiceResponse,
}


def _receiver(path: str) -> str | None:
    if path.startswith("/api/"):
        return "native"
    if path in _OTLP_RESPONSES:
        return "otlp_http"
    return None


def answer_errors(path: str, status: int, content_type: str, body: bytes) -> list[dict[str, Any]]:
    """The first field errors an answer names: the native `errors`, an OTLP Status message,
    or an OTLP partial success's error message."""
    if content_type.startswith("application/json"):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(data, dict):
            return []
        if isinstance(data.get("errors"), list):
            return [
                error_entry(e.get("index"), str(e.get("field", "")), str(e.get("message", "")))
                for e in data["errors"][:MAX_ERRORS] if isinstance(e, dict)
            ]
        partial = data.get("partialSuccess")
        message = partial.get("errorMessage") if isinstance(partial, dict) else data.get("message")
        return [error_entry(None, "", str(message))] if message else []
    if content_type.startswith("application/x-protobuf"):
        try:
            if status >= 400:
                message = Status.FromString(body).message
            else:
                answer: Any = _OTLP_RESPONSES[path].FromString(body)
                message = answer.partial_success.error_message
        except (DecodeError, KeyError):
            return []
        return [error_entry(None, "", message)] if message else []
    return []


class RefusalRecorder:
    """ASGI middleware in front of every other one on the ingest routes (authentication and
    the limits refuse before the route runs); counts each request answered in
    flext_collector_http_requests_total too."""

    def __init__(self, app: ASGIApp, telemetry: SelfTelemetry) -> None:
        self.app = app
        self._refusals = telemetry.refusals
        self._requests = telemetry.http_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        route = INGEST_ROUTES.get(path)
        receiver = (
            _receiver(path) if scope["type"] == "http" and scope["method"] == "POST" else None
        )
        if receiver is None or route is None:
            await self.app(scope, receive, send)
            return
        status = 0
        content_type = ""
        body = bytearray()

        async def keep(message: AsgiMessage) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type":
                        content_type = value.decode("latin-1")
            elif message["type"] == "http.response.body" and len(body) < MAX_ANSWER_READ:
                body.extend(message.get("body", b""))
            await send(message)

        with recording() as pending:
            try:
                await self.app(scope, receive, keep)
            finally:
                self._requests.labels(receiver, route[0], str(status)).inc()
                errors = answer_errors(path, status, content_type, bytes(body)) if (
                    pending.reasons and len(body) <= MAX_ANSWER_READ
                ) else []
                refusal = refusal_of(pending, request_tenant(scope), receiver, status, errors)
                if refusal is not None:
                    self._refusals.add(refusal)
