"""The ingest routes served past FastAPI's request machinery.

`IngestDispatch` is the innermost ASGI middleware: a POST to an ingest route
(`routes.INGEST`) goes straight to its endpoint, after authentication, the limits, CORS
and the refusal recorder (the middlewares outside it) and without FastAPI's exception
middleware, router, dependency solving and request handler, which cost more than the
endpoint's own work at 100 spans a request (README "Performance"). Everything else, the
other methods on these paths included (405), goes on to FastAPI, which also describes the
ingest routes in the OpenAPI document, as it registered them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from flext_observability.routes import INGEST

Endpoint = Callable[[Request], Awaitable[Response]]


def ingest_endpoints(routes: Iterable[BaseRoute]) -> dict[str, Endpoint]:
    """The POST endpoint of each ingest path among `routes` (an app's or a router's)."""
    return {
        route.path: route.endpoint
        for route in routes
        if isinstance(route, APIRoute) and route.path in INGEST and "POST" in route.methods
    }


class IngestDispatch:
    """ASGI middleware: POST on a path of `endpoints` -> that endpoint, directly."""

    def __init__(self, app: ASGIApp, endpoints: Mapping[str, Endpoint]) -> None:
        self.app = app
        self._endpoints = dict(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self._endpoints.get(scope["path"])
            if endpoint is not None:
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
