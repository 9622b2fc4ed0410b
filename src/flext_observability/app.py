"""`create_app(config)`: builds the collector's parts and the HTTP app; nothing at import time.

Start order is downstream first (queue, held state, then consumers and exporters, then
receivers); shutdown is upstream first, so that every stage can drain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import (
    CONTENT_TYPE_PLAIN_0_0_4,
    choose_encoder,
    generate_latest,
)

from flext_observability.config import Config
from flext_observability.exporters.alertmanager.exporter import NAME as ALERTMANAGER
from flext_observability.exporters.alertmanager.exporter import AlertmanagerExporter
from flext_observability.exporters.alertmanager.state import AlertState
from flext_observability.exporters.jaeger.exporter import NAME as JAEGER
from flext_observability.exporters.jaeger.exporter import JaegerExporter
from flext_observability.exporters.prometheus.exporter import PrometheusExporter
from flext_observability.exporters.prometheus.persist import StoreState
from flext_observability.exporters.prometheus.store import MetricStore
from flext_observability.health.tracker import HealthTracker
from flext_observability.models.native import Alert, HealthReport, Metric, Span
from flext_observability.models.times import rfc3339
from flext_observability.pipeline.consumer import Checkpoints, LocalConsumer
from flext_observability.pipeline.exporter import Exporter
from flext_observability.pipeline.intake import Intake, RecordsAdmission
from flext_observability.pipeline.kafka.queue import build_kafka_queue
from flext_observability.pipeline.queue import MemoryQueue, Queue, Signal, SqliteQueue
from flext_observability.receivers.auth import (
    Authenticator,
    BearerAuthMiddleware,
    request_tenant,
)
from flext_observability.receivers.cors import OtlpCorsMiddleware
from flext_observability.receivers.limits import MIB, Gate, IngestLimits, MemoryLimiter
from flext_observability.receivers.native import NativeReceiver, build_router
from flext_observability.receivers.otlp import OtlpIngest, build_otlp_router
from flext_observability.receivers.otlp_grpc import OtlpGrpcServer
from flext_observability.startup import DirectoryLock
from flext_observability.tasks import cancel
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)

# refused_items_total reasons of alerts and health reports past their state's limit
HEALTH_LIMIT = "health_limit"
ALERT_LIMIT = "alert_limit"

DOCS_STATIC = "/docs/static"
# Seconds the exporters get at shutdown to finish the deliveries in flight.
EXPORTER_SHUTDOWN_GRACE = 5.0
# With queue.hold_unexported, how often the held spans are logged (when there are any).
HELD_LOG_INTERVAL = 60.0
HELD_REASON = (
    "no span exporter is configured (exporters.jaeger.endpoint) and queue.hold_unexported "
    "is true"
)


def build_queue(config: Config, registry: CollectorRegistry) -> Queue:
    q = config.queue
    if q.kind == "kafka":
        return build_kafka_queue(q.kafka, q.path, q.max_items, q.max_bytes,
                                 q.retry_after_seconds, registry)
    if q.kind == "memory":
        return MemoryQueue(q.max_items, q.max_bytes, q.retry_after_seconds, q.signal_share)
    return SqliteQueue(
        q.path, q.max_items, q.max_bytes, q.retry_after_seconds, q.signal_share
    )


class Collector:
    """Every part of the running daemon, wired from the config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.registry = CollectorRegistry(auto_describe=False)
        self.lock = (
            None if config.queue.kind == "memory"
            else DirectoryLock(config.queue.path, "queue.path")
        )
        self.queue = build_queue(config, self.registry)
        self.telemetry = SelfTelemetry(self.registry, self.queue)
        prom = config.exporters.prometheus
        self.store = MetricStore(
            prom.max_series, prom.max_series_per_metric, prom.metric_expiration,
            max_series_per_service=prom.max_series_per_service,
        )
        self.registry.register(self.store)
        self.prometheus = PrometheusExporter(self.store, self.telemetry)
        self.alerts = AlertState(max_alerts=config.exporters.alertmanager.max_alerts)
        self.health = HealthTracker(
            config.health.default_ttl_seconds, self.alerts.publish,
            max_services=config.health.max_services,
        )
        self.registry.register(self.health)
        # The held state (series, alerts, health) and the cursors it reflects, written
        # together (kept in memory only with a memory queue).
        self.checkpoints = Checkpoints(self.queue, self.telemetry)
        self.checkpoints.add("health", self.health)
        self.checkpoints.add("alerts", self.alerts)
        self.consumers = [
            LocalConsumer(self.queue, "health", [Signal.HEALTH], self.health.handle,
                          self.telemetry, checkpoints=self.checkpoints),
            LocalConsumer(self.queue, "alerts", [Signal.ALERTS], self.alerts.handle,
                          self.telemetry, checkpoints=self.checkpoints),
        ]
        if prom.enabled:
            self.checkpoints.add("prometheus", StoreState(self.store))
            self.consumers.append(
                LocalConsumer(self.queue, "prometheus", [Signal.METRICS], self.prometheus.handle,
                              self.telemetry, checkpoints=self.checkpoints)
            )
        else:
            log.warning("exporters.prometheus.enabled is false: metrics stay in the queue")
        self.exporters: dict[str, Exporter] = {}
        self._held_task: asyncio.Task[None] | None = None
        if config.exporters.jaeger.endpoint:
            self.exporters[JAEGER] = JaegerExporter(
                config.exporters.jaeger, self.queue, self.telemetry
            )
        if config.exporters.alertmanager.urls:
            self.exporters[ALERTMANAGER] = AlertmanagerExporter(
                config.exporters.alertmanager, self.alerts, self.telemetry
            )
        self.intake = Intake(self.queue, self.prometheus if prom.enabled else None, {
            Signal.HEALTH: RecordsAdmission(HEALTH_LIMIT, self.health.admit, self.health.release),
            Signal.ALERTS: RecordsAdmission(ALERT_LIMIT, self.alerts.admit, self.alerts.release),
        })
        self.native = NativeReceiver(
            self.intake.put,
            self.telemetry,
            config.server.max_body_bytes,
            config.server.max_items_per_request,
            read_timeout=config.server.read_timeout,
            limits=config.limits,
            accepts_spans=config.accepts_spans(),
        )
        limits = config.limits
        self.otlp = OtlpIngest(self.intake.put, self.telemetry, accepts_logs=False,
                               limits=limits, accepts_spans=config.accepts_spans())
        self.memory = MemoryLimiter(
            limits.memory_limit_mib * MIB, limits.memory_spike_limit_mib * MIB,
            limits.memory_check_interval,
        )
        # HTTP and gRPC each admit limits.max_concurrent_requests at once.
        self.http_gate = Gate(limits.max_concurrent_requests, self.memory, self.queue,
                              self.telemetry, limits.retry_after_seconds,
                              limits.max_slow_requests, limits.slow_body_seconds)
        self.grpc_gate = Gate(limits.max_concurrent_requests, self.memory, self.queue,
                              self.telemetry, limits.retry_after_seconds)
        self.authenticator = Authenticator.from_config(config.server.auth, self.telemetry)
        self.grpc = OtlpGrpcServer(
            self.otlp, config.server.host, config.server.grpc_port,
            config.server.grpc_max_message_bytes, self.authenticator, config.server.tls,
            gate=self.grpc_gate,
        )

    async def start(self) -> None:
        """Downstream first: queue, held state, consumers and exporters, then receivers.

        Raises StartupError when the queue directory is another collector's or the gRPC
        port is taken; `shutdown()` then releases what was started."""
        if self.lock is not None:
            self.lock.acquire()
        await self.memory.start()
        await self.queue.start()
        await self.checkpoints.start()
        await self.health.start()
        for consumer in self.consumers:
            await consumer.start()
        for exporter in self.exporters.values():
            await exporter.start()
        await self.grpc.start()
        if JAEGER not in self.exporters:
            if self.config.queue.hold_unexported:
                log.warning("spans are held in the queue: %s", HELD_REASON)
                self._held_task = asyncio.create_task(self._log_held(), name="held-spans")
            else:
                log.warning("spans are refused: no span exporter is configured "
                            "(exporters.jaeger.endpoint)")

    def held(self) -> dict[str, Any]:
        """What is held with no exporter to deliver it (queue.hold_unexported)."""
        if JAEGER in self.exporters or not self.config.queue.hold_unexported:
            return {}
        return {"spans": {"items": self.queue.depth(Signal.SPANS), "reason": HELD_REASON}}

    async def _log_held(self) -> None:
        """A line every HELD_LOG_INTERVAL while spans are held; the first as they arrive."""
        logged: float | None = None
        while True:
            await asyncio.sleep(1.0)
            items = self.queue.depth(Signal.SPANS)
            if items and (logged is None or time.monotonic() - logged >= HELD_LOG_INTERVAL):
                logged = time.monotonic()
                log.warning("holding %d spans in the queue: %s", items, HELD_REASON)

    async def shutdown(self) -> None:
        """Upstream first. (Uvicorn has stopped HTTP before the lifespan ends.) Consumers
        drain the queue into their state; exporters get EXPORTER_SHUTDOWN_GRACE seconds for
        what is in flight, and what they did not deliver stays queued or held."""
        await self.grpc.shutdown()
        await cancel(self._held_task)
        for consumer in self.consumers:
            await consumer.shutdown()
        await self.health.shutdown()
        await self.checkpoints.shutdown()
        deadline = time.monotonic() + EXPORTER_SHUTDOWN_GRACE
        await asyncio.gather(*(e.shutdown(deadline) for e in self.exporters.values()))
        await self.queue.shutdown()
        await self.memory.shutdown()
        if self.lock is not None:
            self.lock.release()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready while the queue is writable, the held state is written and the memory
        limiter lets data in."""
        writable = self.queue.writable()
        ready = writable and not self.checkpoints.failing and not self.memory.limited
        exporters: dict[str, Any] = {c.name: c.state() for c in self.consumers}
        exporters.update({name: e.state() for name, e in self.exporters.items()})
        body = {
            "ready": ready,
            "queue": {
                "writable": writable,
                "items": self.queue.total_items,
                "capacity_items": self.queue.max_items,
            },
            "memory": self.memory.state(),
            "exporters": exporters,
        }
        held = self.held()
        if held:
            body["held"] = held
        return ready, body


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


def add_ingest_routes(
    app: FastAPI,
    native: NativeReceiver,
    otlp: OtlpIngest,
    gate: Gate,
    authenticator: Authenticator | None,
    config: Config,
    telemetry: SelfTelemetry,
) -> None:
    """The POST routes and the middleware in front of every route: the collector's app
    and an ingest worker's (`workers.edge`) are wired alike."""
    app.include_router(build_router(native))
    app.include_router(build_otlp_router(
        otlp, config.server.max_body_bytes, config.server.read_timeout, telemetry
    ))
    app.add_middleware(IngestLimits, gate=gate)
    # The last added runs first: CORS answers preflights before authentication, which
    # comes before the limits.
    if authenticator is not None:
        app.add_middleware(
            BearerAuthMiddleware, authenticator=authenticator,
            protect_metrics=config.server.auth.protect_metrics,
        )
    if config.server.cors.allowed_origins:
        app.add_middleware(OtlpCorsMiddleware, cors=config.server.cors)


def create_app(config: Config) -> FastAPI:
    """The HTTP app over a new `Collector` (`app.state.collector`), which the server starts
    before it serves and stops after (`server.Server`)."""
    collector = Collector(config)
    # /docs and /redoc with Swagger UI and ReDoc from the fastapi-offline package, under
    # /docs/static: nothing is loaded from outside, so the docs work on a closed network.
    app = FastAPIOffline(title="flext-observability", version="0.1.0", static_url=DOCS_STATIC)
    app.state.collector = collector
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    add_ingest_routes(app, collector.native, collector.otlp, collector.http_gate,
                      collector.authenticator, config, collector.telemetry)

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

    return app
