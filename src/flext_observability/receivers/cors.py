"""CORS for browser senders (`server.cors`), on the OTLP/HTTP routes only.

Starlette's CORSMiddleware, applied to paths under `/v1/`: a preflight from an allowed
origin is answered here, before authentication (browsers send no credentials in a
preflight); answers to the POSTs themselves carry the CORS headers, 401s included.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from flext_observability.receivers.config import CorsConfig
from flext_observability.routes import OTLP_PREFIX

ALWAYS_ALLOWED_HEADERS = ("Content-Type", "Content-Encoding", "Authorization")


class OtlpCorsMiddleware:
    def __init__(self, app: ASGIApp, cors: CorsConfig) -> None:
        self.app = app
        self._cors = CORSMiddleware(
            app,
            allow_origins=cors.allowed_origins,
            allow_methods=["POST", "OPTIONS"],
            allow_headers=[*ALWAYS_ALLOWED_HEADERS, *cors.allowed_headers],
            expose_headers=["Retry-After"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(OTLP_PREFIX):
            await self._cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
