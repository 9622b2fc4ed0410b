"""Last health of every service, staleness after the ttl, and the health gauges (CONTRACT §5).

Every change of a service's current status (healthy, degraded, unhealthy, stale) fires
the derived alert of the new status and resolves the one of the old (`publish`, to the
AlertState). Staleness needs no report, so a periodic `check()` finds it. The tracker is
a `StatefulSink` (one row per service, keyed by its identity), written with the queue
cursors at each checkpoint, so that a restart knows every service, its staleness and its
alerts.

A service is known by (tenant, service, instance): with authentication on, the tenant of
the token that reported it (`tenant` on the gauges and on the derived alerts); "" with it
off. At most `health.max_services` are held per tenant (as the held alerts' limit): a report
of a new one past its tenant's limit is refused at admission (`admit`), before it is queued,
and one tenant at its limit never keeps another's reports out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from typing import Any

import orjson
from prometheus_client.core import GaugeMetricFamily, Metric

from flext_observability.health.alerts import DERIVED, firing_alert, resolved_alert
from flext_observability.health.service import Key, ServiceHealth
from flext_observability.models.errors import ItemError
from flext_observability.pipeline.queue import Record, StateChanges
from flext_observability.tasks import cancel

log = logging.getLogger(__name__)

STATUSES = ("healthy", "degraded", "unhealthy", "stale")
CHECK_INTERVAL = 1.0

Publish = Callable[[list[dict[str, Any]]], None]
def report_key(report: dict[str, Any]) -> Key:
    """The identity of a health report (a queued record)."""
    return (report.get("tenant", ""), report["service"], report.get("instance", ""))


class HealthTracker:
    """Consumes health reports; a service with no report within its ttl is `stale`."""

    def __init__(
        self,
        default_ttl: float,
        publish: Publish,
        max_services: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        check_interval: float = CHECK_INTERVAL,
    ) -> None:
        self.default_ttl = default_ttl
        self._publish = publish
        self._clock = clock
        self._wall = wall_clock
        self._check_interval = check_interval
        self._task: asyncio.Task[None] | None = None
        self.max_services = max_services
        self.services: dict[Key, ServiceHealth] = {}
        self._held: Counter[str] = Counter()  # services held per tenant
        self._dirty: set[Key] = set()
        # New services admitted and not applied yet (they count against their tenant's limit).
        self._admitted: set[Key] = set()

    def admit(self, reports: list[dict[str, Any]]) -> list[ItemError]:
        """The reports of new services past their tenant's `health.max_services`; none when
        all fit (and then the new ones are counted as held from now on)."""
        new = {report_key(r) for r in reports} - self.services.keys() - self._admitted
        wanted = Counter(tenant for tenant, _, _ in new)
        admitted = Counter(tenant for tenant, _, _ in self._admitted)
        held = {tenant: self._held[tenant] + admitted[tenant] for tenant in wanted}
        full = {t for t, count in wanted.items() if count > self.max_services - held[t]}
        if not full:
            self._admitted |= new
            return []
        return [
            ItemError(index, "service",
                      f"{held[key[0]]} services of this tenant are held, the most "
                      f"health.max_services={self.max_services} allows per tenant; this "
                      "report is of a new one")
            for index, report in enumerate(reports)
            if (key := report_key(report)) in new and key[0] in full
        ]

    def release(self, reports: list[dict[str, Any]]) -> None:
        """Reports admitted that were not queued after all: their new services no longer
        count."""
        self._admitted -= {report_key(r) for r in reports}

    def handle(self, records: list[Record]) -> None:
        """Queue consumer: apply health reports."""
        received = self._clock()
        updated = {}
        for record in records:
            for report in orjson.loads(record.payload):
                stamp = report.get("timestamp")
                key = report_key(report)
                self._admitted.discard(key)
                previous = self.services.get(key)
                if previous is None:
                    self._held[key[0]] += 1
                updated[key] = self.services[key] = ServiceHealth(
                    tenant=key[0],
                    service=key[1],
                    instance=key[2],
                    status=report["status"],
                    checks=report.get("checks", {}),
                    reported_at=stamp / 1e9 if stamp is not None else self._wall(),
                    received=received,
                    ttl=report.get("ttl_seconds") or self.default_ttl,
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

    def changes(self, limit: int | None = None) -> StateChanges:
        """`StatefulSink`: the services changed since the last call (at most `limit`), one
        row each, with the receive time as a Unix time."""
        offset = self._wall() - self._clock()
        rows: StateChanges = {}
        while self._dirty and len(rows) != limit:
            key = self._dirty.pop()
            health = self.services[key]
            rows[orjson.dumps(key)] = orjson.dumps(
                {**asdict(health), "received": health.received + offset}
            )
        return rows

    def restore(self, rows: list[tuple[bytes, bytes]]) -> None:
        """`StatefulSink`: the services from their rows (at start); the time the collector
        was down counts towards staleness."""
        now, wall = self._clock(), self._wall()
        for _, raw_value in rows:
            health = ServiceHealth(**orjson.loads(raw_value))
            health.received = now - max(0.0, wall - health.received)
            if health.key not in self.services:
                self._held[health.tenant] += 1
            self.services[health.key] = health
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

    def snapshot(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """What `GET /api/v1/health` shows: with a `tenant` (authentication on), its own
        services only."""
        return [
            {
                **({"tenant": h.tenant} if h.tenant else {}),
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
            if tenant is None or h.tenant == tenant
        ]

    def collect(self) -> Iterator[Metric]:
        status = GaugeMetricFamily(
            "flext_service_health_status",
            "1 for the service's current health status, 0 for the others",
            labels=["service", "instance", "status", "tenant"],
        )
        last = GaugeMetricFamily(
            "flext_service_health_last_report_timestamp_seconds",
            "Unix time of the service's last health report",
            labels=["service", "instance", "tenant"],
        )
        for health in self.services.values():
            current = self.status(health)
            for name in STATUSES:
                status.add_metric(
                    [health.service, health.instance, name, health.tenant],
                    1.0 if name == current else 0.0,
                )
            last.add_metric([health.service, health.instance, health.tenant],
                            health.reported_at)
        yield status
        yield last
