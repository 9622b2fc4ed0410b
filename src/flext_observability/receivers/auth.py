"""Bearer-token authentication of the receivers, and the tenant each token stands for.

With any token configured (`server.auth`), every ingestion route (native `/api/...`,
OTLP/HTTP `/v1/...`, and `/metrics` and `/` with `protect_metrics`) needs `Authorization: Bearer
<token>`; `/healthz`, `/readyz` and the docs stay open. The HTTP check is a pure ASGI
middleware that answers 401 before the body is read; OTLP/gRPC checks the `authorization`
metadata per call. The authenticated tenant travels in the ASGI scope (`request.state`)
or as an argument, and is recorded on what is queued: a `tenant` label on native metrics
and alerts, a `tenant` field in health reports, a `flext.tenant` resource attribute on spans
and OTLP data. Token values are never logged nor put in messages.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from typing import Any

import orjson
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.types import ASGIApp, Receive, Scope, Send

from flext_observability.config import AuthConfig
from flext_observability.models.errors import ItemError
from flext_observability.models.native import TENANT, TENANT_ATTRIBUTE
from flext_observability.models.otlp import encode_status
from flext_observability.receivers.body import media_type
from flext_observability.receivers.pushgateway.path import PREFIX as PUSH_PREFIX
from flext_observability.routes import INGEST, OTLP_PREFIX
from flext_observability.signals import Signal
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)

UNAUTHORIZED = "unauthorized"
MESSAGE = "missing or invalid bearer token"
# google.rpc.Code UNAUTHENTICATED, in the Status body of an OTLP/HTTP 401.
UNAUTHENTICATED = 16

_OTLP_REQUESTS: dict[Signal, tuple[type[Message], str]] = {
    Signal.SPANS: (ExportTraceServiceRequest, "resource_spans"),
    Signal.METRICS: (ExportMetricsServiceRequest, "resource_metrics"),
    Signal.LOGS: (ExportLogsServiceRequest, "resource_logs"),
}


def bearer_token(authorization: bytes | None) -> bytes:
    """The token of an `Authorization: Bearer <token>` value; empty for anything else."""
    if not authorization:
        return b""
    scheme, _, token = authorization.strip().partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else b""


class Authenticator:
    """The configured tokens, kept as SHA-256 digests, each with its tenant.

    A presented token is compared with every configured one in constant time
    (`hmac.compare_digest` on equal-length digests, no early exit), so timing tells
    neither which token nor how long a token is.
    """

    def __init__(self, tokens: Iterable[tuple[str, str]], telemetry: SelfTelemetry) -> None:
        self._tokens: list[tuple[bytes, str]] = []
        self.replace(tokens)
        self._telemetry = telemetry

    def replace(self, tokens: Iterable[tuple[str, str]]) -> None:
        """Take these (token, tenant) pairs in place of the current ones, at once."""
        self._tokens = [(_digest(token.encode()), tenant) for token, tenant in tokens]

    @classmethod
    def from_config(cls, auth: AuthConfig, telemetry: SelfTelemetry) -> Authenticator | None:
        """None when no token is configured (authentication off)."""
        entries = auth.entries()
        if not entries:
            return None
        return cls(((e.token, e.tenant) for e in entries), telemetry)

    def tenant(self, authorization: bytes | None) -> str | None:
        """The tenant of the `Authorization` header value's token; None when it is not one."""
        presented = bearer_token(authorization)
        digest = _digest(presented)
        found = None
        for expected, tenant in self._tokens:
            if hmac.compare_digest(digest, expected):
                found = tenant
        return found if presented else None

    def refused(self, signal: Signal) -> None:
        """Count one refused request in refused_items_total{signal, reason="unauthorized"}."""
        self._telemetry.refused.labels(signal.value, UNAUTHORIZED).inc()


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def request_tenant(scope: Scope) -> str | None:
    """The tenant the middleware authenticated for this request; None with auth off."""
    state = scope.get("state")
    return state.get(TENANT) if state else None


class BearerAuthMiddleware:
    """Answers 401 (`WWW-Authenticate: Bearer`) to a protected request without a valid
    token, in the route's error format; otherwise puts the tenant in `scope["state"]`."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, protect_metrics: bool) -> None:
        self.app = app
        self._auth = authenticator
        self._protect_metrics = protect_metrics
        native = {"errors": [ItemError(None, "", MESSAGE).as_dict()]}
        self._native_body = orjson.dumps(native)
        self._otlp_json_body = encode_status(UNAUTHENTICATED, MESSAGE, json=True)
        self._otlp_protobuf_body = encode_status(UNAUTHENTICATED, MESSAGE, json=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        otlp = path.startswith(OTLP_PREFIX)
        push = path.startswith(PUSH_PREFIX)
        protected = self._protect_metrics and path in ("/metrics", "/")
        if not (otlp or push or path.startswith(("/api/", "/-/")) or protected):
            await self.app(scope, receive, send)
            return
        authorization = content_type = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
        tenant = self._auth.tenant(authorization)
        if tenant is not None:
            scope["state"] = {**scope.get("state", {}), TENANT: tenant}
            await self.app(scope, receive, send)
            return
        # What a refused push or POST would have sent, for refused_items_total{signal}.
        route = INGEST.get(path)
        if push:
            self._auth.refused(Signal.METRICS)
        elif route is not None and scope["method"] == "POST":
            self._auth.refused(route.signal)
        log.debug("401 %s %s from %s: %s", scope["method"], path, scope.get("client"),
                  "no bearer token" if not bearer_token(authorization) else "unknown token")
        if not otlp:
            await _answer(send, self._native_body, b"application/json")
        elif content_type and media_type(content_type.decode("latin-1")) == "application/json":
            await _answer(send, self._otlp_json_body, b"application/json")
        else:
            await _answer(send, self._otlp_protobuf_body, b"application/x-protobuf")


async def _answer(send: Send, body: bytes, content_type: bytes) -> None:
    await send({
        "type": "http.response.start",
        "status": 401,
        "headers": [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
        ],
    })
    await send({"type": "http.response.body", "body": body})


def tag_resources(resources: Iterable[Any], tenant: str) -> None:
    """Set the `flext.tenant` attribute on every resource, replacing one a sender set."""
    for item in resources:
        attributes = item.resource.attributes
        for index in reversed(range(len(attributes))):
            if attributes[index].key == TENANT_ATTRIBUTE:
                del attributes[index]
        entry = attributes.add()
        entry.key = TENANT_ATTRIBUTE
        entry.value.string_value = tenant


def tag_otlp(signal: Signal, payload: bytes, tenant: str) -> bytes:
    """A serialized OTLP export request with `flext.tenant` on every resource.

    When the payload names no `flext.tenant` (the usual case), the attribute is appended to
    each resource on the wire, without decoding the request: a message field given twice
    is merged into one (the protobuf encoding's rule), so a second `resource` holding only
    the attribute adds it after the sender's. Otherwise the request is decoded, the
    sender's attribute replaced and the request encoded again."""
    if _TENANT_KEY not in payload:
        tagged = _append_to_resources(payload, _tenant_resource(tenant))
        if tagged is not None:
            return tagged
    request_type, field = _OTLP_REQUESTS[signal]
    request = request_type.FromString(payload)
    tag_resources(getattr(request, field), tenant)
    return request.SerializeToString()


_TENANT_KEY = TENANT_ATTRIBUTE.encode()
# The tag of field 1, length-delimited: an export request's resource_spans/_metrics/_logs,
# their `resource`, a Resource's `attributes`, a KeyValue's `key`, an AnyValue's string.
_FIELD_1 = b"\x0a"
_FIELD_2 = b"\x12"  # a KeyValue's `value`


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(tag: bytes, content: bytes) -> bytes:
    return tag + _varint(len(content)) + content


def _tenant_resource(tenant: str) -> bytes:
    """`resource { attributes { key: "flext.tenant" value { string_value: tenant } } }`."""
    value = _delimited(_FIELD_1, tenant.encode())
    pair = _delimited(_FIELD_1, _TENANT_KEY) + _delimited(_FIELD_2, value)
    return _delimited(_FIELD_1, _delimited(_FIELD_1, pair))


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _append_to_resources(payload: bytes, extra: bytes) -> bytes | None:
    """`payload` (an export request) with `extra` appended to each of its field 1 entries;
    None for what this walk does not take (a group, a truncated field)."""
    parts: list[bytes] = []
    pos = 0
    try:
        while pos < len(payload):
            start = pos
            tag, pos = _read_varint(payload, pos)
            wire_type = tag & 7
            if wire_type == 2:
                length, pos = _read_varint(payload, pos)
                end = pos + length
                if end > len(payload):
                    return None
                if tag >> 3 == 1:
                    content = payload[pos:end]
                    parts.append(_delimited(_FIELD_1, content + extra))
                else:
                    parts.append(payload[start:end])
                pos = end
            elif wire_type in (0, 1, 5):
                pos = _read_varint(payload, pos)[1] if wire_type == 0 else (
                    pos + (8 if wire_type == 1 else 4))
                parts.append(payload[start:pos])
            else:
                return None
    except IndexError:
        return None
    return b"".join(parts) if pos == len(payload) else None
