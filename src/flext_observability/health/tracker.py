"""Last health of every service, staleness after the ttl, and the health gauges (CONTRACT §5).

Every change of a service's current status (healthy, degraded, unhealthy, stale) fires
the derived alert of the new status and resolves the one of the old (`publish`, to the
AlertState). Staleness needs no report, so a periodic `check()` finds it. The tracker is
a `StatefulSink` (one row per service, keyed by its identity), written with the queue
cursors at each checkpoint, so that a restart knows every service, its staleness and its
alerts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from prometheus_client.core import GaugeMetricFamily, Metric

from flext_observability.health.alerts import DERIVED, firing_alert, resolved_alert
from flext_observability.pipeline.queue import Record, StateChanges
from flext_observability.tasks import cancel

log = logging.getLogger(__name__)

STATUSES = ("healthy", "degraded", "unhealthy", "stale")
CHECK_INTERVAL = 1.0

Publish = Callable[[list[dict[str, Any]]], None]


@dataclass(slots=True)
class ServiceHealth:
    service: str
    instance: str
    status: str
    checks: dict[str, Any]
    reported_at: float
    received: float
    ttl: float
    alerted: str = "healthy"  # the status whose derived alert is firing


class HealthTracker:
    """Consumes health reports; a service with no report within its ttl is `stale`."""

    def __init__(
        self,
        default_ttl: float,
        publish: Publish,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        check_interval: float = CHECK_INTERVAL,
    ) -> None:
        self._default_ttl = default_ttl
        self._publish = publish
        self._clock = clock
        self._wall = wall_clock
        self._check_interval = check_interval
        self._task: asyncio.Task[None] | None = None
        self.services: dict[tuple[str, str], ServiceHealth] = {}
        self._dirty: set[tuple[str, str]] = set()

    def handle(self, records: list[Record]) -> None:
        """Queue consumer: apply health reports."""
        received = self._clock()
        updated = {}
        for record in records:
            for report in orjson.loads(record.payload):
                stamp = report.get("timestamp")
                key = (report["service"], report.get("instance", ""))
                previous = self.services.get(key)
                updated[key] = self.services[key] = ServiceHealth(
                    service=key[0],
                    instance=key[1],
                    status=report["status"],
                    checks=report.get("checks", {}),
                    reported_at=stamp / 1e9 if stamp is not None else self._wall(),
                    received=received,
                    ttl=report.get("ttl_seconds") or self._default_ttl,
                    alerted=previous.alerted if previous else "healthy",
                )
        self._dirty.update(updated)
        self._publish(self._derive(updated.values()))

    def check(self) -> None:
        """Fire and resolve the alerts of services whose status changed with time (stale)."""
        changed = {k: h for k, h in self.services.items() if self.status(h) != h.alerted}
        if changed:
            self._dirty.update(changed)
            self._publish(self._derive(changed.values()))

    def _derive(self, healths: Iterable[ServiceHealth]) -> list[dict[str, Any]]:
        alerts = []
        for health in healths:
            current = self.status(health)
            if health.alerted != current and health.alerted in DERIVED:
                alerts.append(resolved_alert(health, health.alerted))
            if current in DERIVED:
                alerts.append(firing_alert(health, current))
            health.alerted = current
        return alerts

    def status(self, health: ServiceHealth) -> str:
        if self._clock() - health.received > health.ttl:
            return "stale"
        return health.status

    def changes(self) -> StateChanges:
        """`StatefulSink`: the services changed since the last call, one row each, with the
        receive time as a Unix time."""
        offset = self._wall() - self._clock()
        rows: StateChanges = {}
        for key in self._dirty:
            health = self.services[key]
            rows[orjson.dumps(key)] = orjson.dumps(
                {**asdict(health), "received": health.received + offset}
            )
        self._dirty.clear()
        return rows

    def restore(self, rows: list[tuple[bytes, bytes]]) -> None:
        """`StatefulSink`: the services from their rows (at start); the time the collector
        was down counts towards staleness."""
        now, wall = self._clock(), self._wall()
        for raw_key, raw_value in rows:
            health = ServiceHealth(**orjson.loads(raw_value))
            health.received = now - max(0.0, wall - health.received)
            self.services[tuple(orjson.loads(raw_key))] = health
        if rows:
            log.info("restored the health of %d services", len(rows))

    async def start(self) -> None:
        """Start the staleness check (after `restore()`)."""
        if self._task is None:
            self._task = asyncio.create_task(self._check_loop(), name="health-check")

    async def shutdown(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval)
            self.check()

    def snapshot(self) -> list[dict[str, Any]]:
        """What `GET /api/v1/health` shows."""
        return [
            {
                "service": h.service,
                "instance": h.instance,
                "status": self.status(h),
                "reported_status": h.status,
                "stale": self.status(h) == "stale",
                "last_report": h.reported_at,
                "ttl_seconds": h.ttl,
                "checks": h.checks,
            }
            for h in self.services.values()
        ]

    def collect(self) -> Iterator[Metric]:
        status = GaugeMetricFamily(
            "flext_service_health_status",
            "1 for the service's current health status, 0 for the others",
            labels=["service", "instance", "status"],
        )
        last = GaugeMetricFamily(
            "flext_service_health_last_report_timestamp_seconds",
            "Unix time of the service's last health report",
            labels=["service", "instance"],
        )
        for health in self.services.values():
            current = self.status(health)
            for name in STATUSES:
                status.add_metric(
                    [health.service, health.instance, name], 1.0 if name == current else 0.0
                )
            last.add_metric([health.service, health.instance], health.reported_at)
        yield status
        yield last
