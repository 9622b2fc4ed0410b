"""Last health of every service, staleness after the ttl, and the health gauges (CONTRACT §5)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client.core import GaugeMetricFamily, Metric

from flext_observability.pipeline.queue import Record

STATUSES = ("healthy", "degraded", "unhealthy", "stale")


@dataclass(slots=True)
class ServiceHealth:
    service: str
    instance: str
    status: str
    checks: dict[str, Any]
    reported_at: float
    received: float
    ttl: float


class HealthTracker:
    """Consumes health reports; a service with no report within its ttl is `stale`."""

    def __init__(
        self,
        default_ttl: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._default_ttl = default_ttl
        self._clock = clock
        self._wall = wall_clock
        self.services: dict[tuple[str, str], ServiceHealth] = {}

    def handle(self, records: list[Record]) -> None:
        received = self._clock()
        for record in records:
            for report in orjson.loads(record.payload):
                stamp = report.get("timestamp")
                key = (report["service"], report.get("instance", ""))
                self.services[key] = ServiceHealth(
                    service=key[0],
                    instance=key[1],
                    status=report["status"],
                    checks=report.get("checks", {}),
                    reported_at=stamp / 1e9 if stamp is not None else self._wall(),
                    received=received,
                    ttl=report.get("ttl_seconds") or self._default_ttl,
                )

    def status(self, health: ServiceHealth) -> str:
        if self._clock() - health.received > health.ttl:
            return "stale"
        return health.status

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
