"""The ingest routes served before FastAPI.

`IngestFront` is the ASGI app the server runs: a POST to an ingest route (`routes.INGEST`)
goes through the refusal recorder, CORS, authentication and the limits (`ingest_chain`,
built by `builder.add_ingest_routes`) straight to its endpoint, without FastAPI's
middleware stack, router, dependency solving and request handler, which cost more than
the endpoint's own work at 100 spans a request (README "Performance"). Everything else,
the other methods on these paths included (405), goes to the FastAPI app, which also
describes the ingest routes in its OpenAPI document, as it registered them.
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
    """The POST endpoint of each ingest path among a router's `routes`."""
    return {
        route.path: route.endpoint
        for route in routes
        if isinstance(route, APIRoute) and route.path in INGEST and "POST" in (route.methods or ())
    }


class IngestDispatch:
    """ASGI app: the request to the endpoint of its path (a path of `endpoints`)."""

    def __init__(self, endpoints: Mapping[str, Endpoint]) -> None:
        self._endpoints = dict(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._endpoints[scope["path"]](Request(scope, receive))
        await response(scope, receive, send)


class IngestFront:
    """ASGI app: a POST on a path of `paths` -> `ingest_chain`; anything else -> `app`."""

    def __init__(self, app: ASGIApp, ingest_chain: ASGIApp, paths: Iterable[str]) -> None:
        self.app = app
        self._chain = ingest_chain
        self._paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] in self._paths):
            await self._chain(scope, receive, send)
        else:
            await self.app(scope, receive, send)
