"""What is held of one service: its last report, when it came, its ttl and its firing alert."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Key = tuple[str, str, str]  # (tenant, service, instance)


@dataclass(slots=True)
class ServiceHealth:
    service: str
    instance: str
    status: str
    checks: dict[str, Any]
    reported_at: float
    received: float
    ttl: float
    tenant: str = ""
    alerted: str = "healthy"  # the status whose derived alert is firing

    @property
    def key(self) -> Key:
        return (self.tenant, self.service, self.instance)
