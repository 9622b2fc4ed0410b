"""The builder: the config turned into the collector's graph, in one place.

    limits (processors/limits.py: memory limiter, gates) -> receivers
        (`components.RECEIVERS`: native, OTLP/HTTP, OTLP/gRPC, push API; with auth on,
        tenant tagging, processors/tenant.py) -> intake (admission processors) -> queue
        (`components.QUEUES`) -> sinks (local consumers, exporters: `components.EXPORTERS`)

`build_intake` places the processors before the queue: series admission (the metric
store's limits, `processors/admission.py`) and the held states' limits for native alerts
and health reports. `build_ingest` makes the receiving side from the registry
(`components.RECEIVERS`), alike for the collector process and an ingest worker
(`workers.edge`), which differ only in what `put` hands the payload to (the intake, or the
collector process over its socket) and in the collector's own parts (`LocalParts`, which a
worker has not: the receivers served by the collector process alone are not built there);
`add_ingest_routes` mounts it on an HTTP app. `build_exporters` makes every configured
exporter from the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from flext_observability.components import EXPORTERS, RECEIVERS, ExporterContext
from flext_observability.config import Config
from flext_observability.exporters.alertmanager.state import AlertState
from flext_observability.exporters.prometheus.store import MetricStore
from flext_observability.health.tracker import HealthTracker
from flext_observability.pipeline.exporter import Exporter
from flext_observability.pipeline.intake import Intake, RecordsAdmission
from flext_observability.pipeline.queue import Queue
from flext_observability.processors.admission import SeriesAdmission
from flext_observability.processors.limits import (
    MIB,
    Gate,
    IngestLimits,
    MemoryLimiter,
    QueueLevels,
)
from flext_observability.receivers.auth import Authenticator, BearerAuthMiddleware
from flext_observability.receivers.component import LocalParts, Receiver, ReceiverContext
from flext_observability.receivers.cors import OtlpCorsMiddleware
from flext_observability.receivers.dispatch import IngestDispatch, IngestFront, ingest_endpoints
from flext_observability.refusals.middleware import RefusalRecorder
from flext_observability.signals import Signal
from flext_observability.telemetry import SelfTelemetry


@dataclass(frozen=True, slots=True)
class Ingest:
    """The receiving side: the receivers (`components.RECEIVERS`, by name), the limits in
    front of them (the memory limiter, the HTTP app's gate and gRPC's), authentication."""

    receivers: dict[str, Receiver]
    memory: MemoryLimiter
    http_gate: Gate
    grpc_gate: Gate
    authenticator: Authenticator | None

    def apply(self, config: Config) -> None:
        """A reloaded config's item limits and accepted signals, to every receiver."""
        for receiver in self.receivers.values():
            receiver.apply(config)


# refused_items_total reasons of alerts and health reports past their state's limit
HEALTH_LIMIT = "health_limit"
ALERT_LIMIT = "alert_limit"


def build_intake(
    config: Config, queue: Queue, store: MetricStore, health: HealthTracker, alerts: AlertState
) -> Intake:
    """The intake and its admission processors: series admission when the Prometheus
    exporter is on, each held state's limit for native alerts and health reports."""
    series = SeriesAdmission(store) if config.exporters.prometheus.enabled else None
    return Intake(queue, series, {
        Signal.HEALTH: RecordsAdmission(HEALTH_LIMIT, health.admit, health.release),
        Signal.ALERTS: RecordsAdmission(ALERT_LIMIT, alerts.admit, alerts.release),
    })


def build_ingest(
    config: Config, put: Callable[..., Any], telemetry: SelfTelemetry, queue: QueueLevels,
    local: LocalParts | None = None,
) -> Ingest:
    """The receivers of the registry over `put`, the memory limiter and the gates over
    `queue`'s fill; `local`: the collector process's parts (None in an ingest worker)."""
    limits = config.limits
    memory = MemoryLimiter(limits.memory_limit_mib * MIB, limits.memory_spike_limit_mib * MIB,
                           limits.memory_check_interval)
    gate = Gate(limits.max_concurrent_requests, memory, queue, telemetry,
                limits.retry_after_seconds, limits.max_slow_requests, limits.slow_body_seconds)
    # HTTP and gRPC each admit limits.max_concurrent_requests at once.
    grpc_gate = Gate(limits.max_concurrent_requests, memory, queue, telemetry,
                     limits.retry_after_seconds)
    authenticator = Authenticator.from_config(config.server.auth, telemetry)
    context = ReceiverContext(put, telemetry, authenticator, grpc_gate, local)
    receivers = {
        receiver.name: receiver
        for factory in RECEIVERS.values()
        if (receiver := factory(config, context)) is not None
    }
    return Ingest(receivers, memory, gate, grpc_gate, authenticator)


def add_ingest_routes(
    app: FastAPI, ingest: Ingest, config: Config, telemetry: SelfTelemetry
) -> None:
    """The POST routes, described by `app` and served before it (`app.state.ingest_front`,
    receivers/dispatch.py) behind the refusal recorder, CORS, authentication and the
    limits; CORS and authentication stand in front of `app`'s other routes too. The
    collector's app and an ingest worker's are wired alike."""
    routers = [receiver.router for receiver in ingest.receivers.values()
               if receiver.router is not None]
    endpoints = {
        path: endpoint for router in routers
        for path, endpoint in ingest_endpoints(router.routes).items()
    }
    for router in routers:
        app.include_router(router)
    chain: ASGIApp = IngestLimits(IngestDispatch(endpoints), gate=ingest.http_gate)
    # The last wrapped runs first: CORS answers preflights before authentication, which
    # comes before the limits.
    if ingest.authenticator is not None:
        protect = config.server.auth.protect_metrics
        app.add_middleware(BearerAuthMiddleware, authenticator=ingest.authenticator,
                           protect_metrics=protect)
        chain = BearerAuthMiddleware(chain, ingest.authenticator, protect)
    if config.server.cors.allowed_origins:
        app.add_middleware(OtlpCorsMiddleware, cors=config.server.cors)
        chain = OtlpCorsMiddleware(chain, cors=config.server.cors)
    app.state.ingest_front = IngestFront(app, RefusalRecorder(chain, telemetry=telemetry),
                                         endpoints)


def build_exporters(config: Config, context: ExporterContext) -> dict[str, Exporter]:
    """Every exporter the config turns on, by its name, in registry order."""
    return {
        exporter.name: exporter
        for factory in EXPORTERS.values()
        for exporter in factory(config, context)
    }
