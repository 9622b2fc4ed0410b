"""Bearer-token authentication of the receivers, and the tenant each token stands for.

With any token configured (`server.auth`), every ingestion route (native `/api/...`,
OTLP/HTTP `/v1/...`, and `/metrics` and `/` with `protect_metrics`) needs `Authorization: Bearer
<token>`; `/healthz`, `/readyz` and the docs stay open. The HTTP check is a pure ASGI
middleware that answers 401 before the body is read; OTLP/gRPC checks the `authorization`
metadata per call. The authenticated tenant travels in the ASGI scope (`request.state`)
or as an argument, and is recorded on what is queued: a `tenant` label on native metrics
and alerts, a `tenant` field in health reports, a `flext.tenant` resource attribute on spans
and OTLP data (`processors.tenant`). Token values are never logged nor put in messages.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from flext_observability.models.errors import ItemError
from flext_observability.models.native import TENANT
from flext_observability.models.otlp import encode_status
from flext_observability.receivers.body import media_type
from flext_observability.receivers.config import AuthConfig
from flext_observability.receivers.pushgateway.path import PREFIX as PUSH_PREFIX
from flext_observability.routes import INGEST, OTLP_PREFIX
from flext_observability.signals import Signal
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)

UNAUTHORIZED = "unauthorized"
MESSAGE = "missing or invalid bearer token"
# google.rpc.Code UNAUTHENTICATED, in the Status body of an OTLP/HTTP 401.
UNAUTHENTICATED = 16



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
