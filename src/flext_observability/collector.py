"""The `Collector`: every part of the running daemon, built from the config by the builder.

Start order is downstream first (queue, held state, then consumers and exporters, then
receivers); shutdown is upstream first, so that every stage can drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry

from flext_observability.builder import (
    build_exporters,
    build_ingest,
    build_intake,
)
from flext_observability.components import QUEUES, ExporterContext
from flext_observability.config import Config
from flext_observability.exporters.alertmanager.state import AlertState
from flext_observability.exporters.prometheus.exporter import PrometheusExporter
from flext_observability.exporters.prometheus.persist import StoreState
from flext_observability.exporters.prometheus.store import MetricStore
from flext_observability.health.tracker import HealthTracker
from flext_observability.pipeline.consumer import Checkpoints, LocalConsumer
from flext_observability.pipeline.exporter import Exporter
from flext_observability.pipeline.queue import Queue
from flext_observability.receivers.component import Listener, LocalParts
from flext_observability.signals import Signal
from flext_observability.startup import DirectoryLock
from flext_observability.tasks import cancel
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)

# Seconds the exporters get at shutdown to finish the deliveries in flight.
EXPORTER_SHUTDOWN_GRACE = 5.0
# With queue.hold_unexported, how often the held spans are logged (when there are any).
HELD_LOG_INTERVAL = 60.0
HELD_REASON = (
    "no span exporter is configured (exporters.jaeger.endpoint or an exporters.otlp entry "
    "with traces) and queue.hold_unexported is true"
)


def _unchanged(old: Exporter, new: Exporter) -> bool:
    """The same kind of exporter with equal settings (an exporter of the registry keeps its
    config model as `config`; one without is always replaced)."""
    return type(old) is type(new) and getattr(old, "config", old) == getattr(new, "config", new)


def build_queue(config: Config, registry: CollectorRegistry) -> Queue:
    """The queue of `queue.kind`, from the registry (`components.QUEUES`)."""
    return QUEUES[config.queue.kind](config.queue, registry)


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
        self.telemetry = SelfTelemetry(self.registry, self.queue, config.server.refusals_kept)
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
        # (health reports raise and resolve alerts too)
        self.alerts.caught_up = lambda: all(map(self.queue.caught_up, ("alerts", "health")))
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
        self._held_task: asyncio.Task[None] | None = None
        # Every sink in one list, started in order and stopped together with a deadline:
        # the local consumers, then the exporters of the registry (`components.EXPORTERS`).
        self._context = ExporterContext(
            self.queue, self.telemetry, self.alerts, (self.store, self.health)
        )
        mark = self.queue.registrations
        self.exporters = build_exporters(config, self._context)
        # The queue cursors the exporters read with (released when an exporter goes).
        self._exporter_cursors = self.queue.registered_since(mark)
        self.sinks: list[Exporter] = [*self.consumers, *self.exporters.values()]
        self.intake = build_intake(config, self.queue, self.store, self.health, self.alerts)
        self.ingest = build_ingest(
            config, self.intake.put, self.telemetry, self.queue,
            LocalParts(self.queue, self.store, self.registry, self.prometheus, self.checkpoints),
        )
        self.memory = self.ingest.memory
        self.grpc_gate = self.ingest.grpc_gate
        self.authenticator = self.ingest.authenticator
        # The receivers' servers of their own (OTLP/gRPC), by receiver name.
        self.listeners: dict[str, Listener] = {
            name: receiver.listener for name, receiver in self.ingest.receivers.items()
            if receiver.listener is not None
        }

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
        for sink in self.sinks:
            await sink.start()
        for listener in self.listeners.values():
            await listener.start()
        if not self.config.exports("traces"):
            if self.config.queue.hold_unexported:
                log.warning("spans are held in the queue: %s", HELD_REASON)
                self._held_task = asyncio.create_task(self._log_held(), name="held-spans")
            else:
                log.warning("spans are refused: no span exporter is configured "
                            "(exporters.jaeger.endpoint or an exporters.otlp entry with traces)")

    async def replace_exporters(self, config: Config, grace: float) -> list[str]:
        """Run the exporters `config` makes (`build_exporters`), while data keeps coming:
        an exporter whose settings did not change keeps running; a removed or changed one
        is shut down (`grace` seconds for its deliveries in flight) before the new one
        starts. A queue-reading exporter goes on from its own cursor, so what it had not
        delivered is sent by its successor; a removed one's cursor stays stored (for when
        it comes back) and the rows only it held are released. The receivers then take
        spans and logs as `config` says. Returns the names started, stopped or replaced."""
        mark = self.queue.registrations
        fresh = build_exporters(config, self._context)
        cursors = self.queue.registered_since(mark)
        kept = {name: old for name, old in self.exporters.items()
                if name in fresh and _unchanged(old, fresh[name])}
        stopping = [old for name, old in self.exporters.items() if name not in kept]
        deadline = time.monotonic() + grace
        await asyncio.gather(*(old.shutdown(deadline) for old in stopping))
        for cursor in sorted(self._exporter_cursors - cursors):
            await self.queue.unregister(cursor)
        self._exporter_cursors = cursors
        for old in stopping:
            if old.name not in fresh:
                with contextlib.suppress(KeyError):
                    self.telemetry.exporter_up.remove(old.name)
        self.exporters = {name: kept.get(name, new) for name, new in fresh.items()}
        self.sinks = [*self.consumers, *self.exporters.values()]
        started = [new for name, new in self.exporters.items() if name not in kept]
        for exporter in started:
            await exporter.start()
        self.ingest.apply(config)
        return sorted({e.name for e in stopping} | {e.name for e in started})

    def held(self) -> dict[str, Any]:
        """What is held with no exporter to deliver it (queue.hold_unexported)."""
        if self.config.exports("traces") or not self.config.queue.hold_unexported:
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
        what is in flight, and what they did not deliver stays queued or held. The held
        state is written last, with the cursors the consumers reached."""
        for listener in self.listeners.values():
            await listener.shutdown()
        await cancel(self._held_task)
        deadline = time.monotonic() + EXPORTER_SHUTDOWN_GRACE
        await asyncio.gather(*(sink.shutdown(deadline) for sink in self.sinks))
        await self.health.shutdown()
        await self.checkpoints.shutdown()
        await self.queue.shutdown()
        await self.memory.shutdown()
        if self.lock is not None:
            self.lock.release()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready while the queue is writable, the held state is written and the memory
        limiter lets data in."""
        writable = self.queue.writable()
        ready = writable and not self.checkpoints.failing and not self.memory.limited
        exporters: dict[str, Any] = {sink.name: sink.state() for sink in self.sinks}
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
