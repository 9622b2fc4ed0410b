"""Alerts derived from health (CONTRACT §6): one per non-healthy status of a service,
with the service's `tenant` label when it has one."""

from __future__ import annotations

from typing import Any

from flext_observability.health.service import ServiceHealth
from flext_observability.models.native import TENANT

# Current status -> (alertname, severity). `healthy` has no alert.
DERIVED = {
    "unhealthy": ("ServiceUnhealthy", "critical"),
    "degraded": ("ServiceDegraded", "warning"),
    "stale": ("ServiceHealthStale", "warning"),
}


def _who(health: ServiceHealth) -> str:
    return f"{health.service} ({health.instance})" if health.instance else health.service


def _checks(health: ServiceHealth) -> str:
    """The checks' messages, the failing ones only when some check failed."""
    checks = health.checks
    failing = {n: c for n, c in checks.items() if c.get("status") != "healthy"} or checks
    lines = []
    for name, check in sorted(failing.items()):
        message = check.get("message")
        lines.append(f"{name}: {check.get('status')}" + (f" - {message}" if message else ""))
    return "; ".join(lines) or "no checks reported"


def _alert(health: ServiceHealth, status: str) -> dict[str, Any]:
    name, severity = DERIVED[status]
    alert: dict[str, Any] = {"name": name, "severity": severity, "service": health.service,
                             "instance": health.instance}
    if health.tenant:
        alert["labels"] = {TENANT: health.tenant}
        alert[TENANT] = health.tenant  # whose alert limit it counts against
    return alert


def firing_alert(health: ServiceHealth, status: str) -> dict[str, Any]:
    """The alert for `status` (unhealthy, degraded or stale), firing."""
    if status == "stale":
        summary = f"{_who(health)} sent no health report for {health.ttl:g}s"
        description = (
            f"last report at Unix time {health.reported_at:.0f} said {health.status}: "
            f"{_checks(health)}"
        )
    else:
        summary = f"{_who(health)} reports {status}"
        description = _checks(health)
    return {**_alert(health, status), "status": "firing", "summary": summary,
            "description": description}


def resolved_alert(health: ServiceHealth, status: str) -> dict[str, Any]:
    """The alert for `status`, resolved now (its annotations stay as they were)."""
    return {**_alert(health, status), "status": "resolved"}
