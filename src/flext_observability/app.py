"""`create_app(config)`: the HTTP app over a new `Collector`; nothing at import time."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client.exposition import (
    CONTENT_TYPE_PLAIN_0_0_4,
    choose_encoder,
    generate_latest,
)

from flext_observability.builder import (
    add_ingest_routes,
)
from flext_observability.collector import Collector
from flext_observability.config import Config
from flext_observability.models.native import Alert, HealthReport, Metric, Span
from flext_observability.models.times import rfc3339
from flext_observability.receivers.auth import request_tenant
from flext_observability.refusals.api import build_refusals_router
from flext_observability.reload.reloader import Reloader, add_reload_route
from flext_observability.status.page import Rates
from flext_observability.status.page import render as render_status

log = logging.getLogger(__name__)

DOCS_STATIC = "/docs/static"


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


# The times of the read APIs, held as Unix seconds, shown as RFC 3339 (as Alertmanager does).
_TIME_KEYS = ("starts_at", "ends_at", "updated", "last_report")


def rfc3339_times(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each item with its time keys as RFC 3339 strings (null stays null)."""
    return [
        {**item, **{key: rfc3339(item[key]) for key in _TIME_KEYS if key in item}}
        for item in items
    ]


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (Metric, Span, Alert, HealthReport):
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(model_schema.pop("$defs", {}))
            components[model.__name__] = model_schema
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(config: Config, config_path: Path | None = None) -> FastAPI:
    """The HTTP app over a new `Collector` (`app.state.collector`), which the server starts
    before it serves and stops after (`server.Server`); `POST /-/reload` re-reads
    `config_path` (`app.state.reloader`)."""
    collector = Collector(config)
    # /docs and /redoc with Swagger UI and ReDoc from the fastapi-offline package, under
    # /docs/static: nothing is loaded from outside, so the docs work on a closed network.
    app = FastAPIOffline(title="flext-observability", version="0.1.0", static_url=DOCS_STATIC)
    app.state.collector = collector
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    add_ingest_routes(app, collector.ingest, config, collector.telemetry)

    @app.get("/metrics", tags=["operations"], response_class=Response, responses={200: {
        "description": "Prometheus text format (0.0.4), or OpenMetrics 1.0 when the Accept "
                       "header asks for application/openmetrics-text",
        "content": {"text/plain": {"schema": {"type": "string"}},
                    "application/openmetrics-text": {"schema": {"type": "string"}}},
    }})
    async def metrics(request: Request) -> Response:
        try:
            encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        except (TypeError, ValueError):  # a `version=` that is no version: the plain format
            encoder, content_type = generate_latest, CONTENT_TYPE_PLAIN_0_0_4
        return Response(encoder(collector.registry), media_type=content_type)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> Response:
        ready, body = collector.readiness()
        return _json(body, 200 if ready else 503)

    # Probes that only look at the status line (HEAD) get the same answer without the body.
    for path, probe in (("/healthz", healthz), ("/readyz", readyz)):
        app.add_api_route(path, probe, methods=["HEAD"], tags=["operations"],
                          operation_id=f"{path.strip('/')}_head")

    # With authentication on, a caller sees its own tenant's alerts and services only.
    @app.get("/api/v1/alerts", tags=["native"])
    async def list_alerts(request: Request) -> Response:
        tenant = request_tenant(request.scope)
        return _json({"alerts": rfc3339_times(collector.alerts.snapshot(tenant))})

    @app.get("/api/v1/health", tags=["native"])
    async def list_health(request: Request) -> Response:
        tenant = request_tenant(request.scope)
        return _json({"services": rfc3339_times(collector.health.snapshot(tenant))})

    app.include_router(build_refusals_router(collector.telemetry.refusals))
    rates = Rates(collector.telemetry)
    app.state.reloader = Reloader(collector, config_path)
    add_reload_route(app, app.state.reloader)

    @app.get("/", tags=["operations"], response_class=HTMLResponse)
    async def status_page() -> HTMLResponse:
        return HTMLResponse(render_status(collector, rates))

    return app
