"""The alerts the collector holds: firing ones by identity, recently resolved ones.

The state is what the Alertmanager exporter sends (and re-sends), so it must survive a
crash once its queue records are acknowledged: it is a `StatefulSink` (one row per alert,
keyed by its label set), written with the queue cursors at each checkpoint and restored at
start. Each change gets a new `version`, so that every Alertmanager can be sent what
changed since its last successful delivery.

At most `exporters.alertmanager.max_alerts` alerts (firing and recently resolved) are held
per tenant (as `health.max_services`): a request that would add one past its tenant's limit
is refused at admission (`admit`), before it is queued, and one tenant at its limit never
keeps another's alerts out. The tenant is the record's `tenant` field, set by the receiver
from the sender's token (with authentication off, every alert is of the one tenant "", even
one with a `tenant` label). Alerts derived from health count in their service's tenant but
are never refused (health reports are admitted, and bounded, by `health.max_services`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from flext_observability.models.errors import ItemError
from flext_observability.models.native import TENANT
from flext_observability.pipeline.queue import Record, StateChanges

log = logging.getLogger(__name__)

LabelSet = tuple[tuple[str, str], ...]

# As Prometheus' notifier: resolved alerts are re-sent for 15 minutes, then forgotten.
RESOLVED_RETENTION = 15 * 60.0


@dataclass(slots=True)
class HeldAlert:
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None
    generator_url: str
    # Equal alerts differ at most in these: a repeat is not a change.
    updated: float = field(compare=False)
    version: int = field(default=0, compare=False)
    tenant: str = field(default="", compare=False)  # whose limit it counts against


def alert_labels(alert: dict[str, Any]) -> dict[str, str]:
    """Alertmanager labels: alertname, severity, service, instance (when known) + labels."""
    labels = {
        "alertname": alert["name"],
        "severity": alert["severity"],
        "service": alert["service"],
        **alert.get("labels", {}),
    }
    if alert.get("instance"):
        labels["instance"] = alert["instance"]
    return labels


def alert_annotations(alert: dict[str, Any]) -> dict[str, str]:
    annotations = dict(alert.get("annotations", {}))
    for key in ("summary", "description"):
        if alert.get(key):
            annotations[key] = alert[key]
    return annotations


def alert_key(alert: dict[str, Any]) -> LabelSet:
    """The identity of a native or derived alert: its label set."""
    return tuple(sorted(alert_labels(alert).items()))


def _seconds(nanos: int | None) -> float | None:
    return None if nanos is None else nanos / 1e9


class AlertState:
    """Firing alerts keyed by label set; a `resolved` report moves one to `resolved`."""

    def __init__(
        self,
        wall_clock: Callable[[], float] = time.time,
        resolved_retention: float = RESOLVED_RETENTION,
        max_alerts: int = 10_000,
    ) -> None:
        self._wall = wall_clock
        self._retention = resolved_retention
        self._listeners: list[Callable[[], None]] = []
        self.firing: dict[LabelSet, HeldAlert] = {}
        self.resolved: dict[LabelSet, HeldAlert] = {}
        self.version = 0
        self._dirty: set[LabelSet] = set()
        self.max_alerts = max_alerts
        # Alerts held (firing and resolved) per tenant.
        self._held: Counter[str] = Counter()
        # New alerts admitted and not applied yet (they count against their tenant's limit).
        self._admitted: dict[LabelSet, str] = {}
        # Whether the state is as new as the log it follows (a restarted instance on Kafka
        # catches up first): the exporter sends nothing before.
        self.caught_up: Callable[[], bool] = lambda: True

    def admit(self, alerts: list[dict[str, Any]]) -> list[ItemError]:
        """The native alerts that would be held past their tenant's
        `exporters.alertmanager.max_alerts`; none when all fit (and then the new ones are
        counted as held from now on)."""
        keys = [(alert_key(alert), alert.get(TENANT, "")) for alert in alerts]
        new = {key: tenant for key, tenant in keys
               if key not in self.firing and key not in self.resolved
               and key not in self._admitted}
        full = self._full(Counter(new.values()))
        if full:
            self.expire()  # resolved alerts past the retention make room
            full = self._full(Counter(new.values()))
        if not full:
            self._admitted.update(new)
            return []
        return [
            ItemError(index, "labels",
                      f"{full[tenant]} alerts of this tenant are held, the most "
                      f"exporters.alertmanager.max_alerts={self.max_alerts} allows per tenant; "
                      "this alert is a new one")
            for index, (key, tenant) in enumerate(keys) if key in new and tenant in full
        ]

    def _full(self, wanted: Counter[str]) -> dict[str, int]:
        """Of the tenants that want `wanted` new alerts, those that have no room for them,
        with how many they hold."""
        admitted = Counter(self._admitted.values())
        held = {tenant: self._held[tenant] + admitted[tenant] for tenant in wanted}
        return {tenant: held[tenant] for tenant, count in wanted.items()
                if count > self.max_alerts - held[tenant]}

    def subscribe(self, listener: Callable[[], None]) -> None:
        """`listener()` is called after every change (once per handled batch)."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        """Stop calling `listener` (an exporter shut down); a listener not subscribed is
        ignored."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def release(self, alerts: list[dict[str, Any]]) -> None:
        """Alerts admitted that were not queued after all: the new ones no longer count."""
        for alert in alerts:
            self._admitted.pop(alert_key(alert), None)

    def apply(self, alert: dict[str, Any]) -> bool:
        """Apply one native alert (a model dump); True when the held state changed."""
        labels = alert_labels(alert)
        key = tuple(sorted(labels.items()))
        self._admitted.pop(key, None)
        tenant = alert.get(TENANT, "")
        now = self._wall()
        starts = _seconds(alert.get("starts_at"))
        ends = _seconds(alert.get("ends_at"))
        if alert["status"] == "resolved":
            already = self.resolved.get(key)
            held = self.firing.get(key) or already
            if ends is None:
                # A repeated `resolved` keeps the first resolve time.
                kept = already.ends_at if already is not None and held is already else None
                ends = now if kept is None else kept
            begun = held.starts_at if held is not None else (starts or ends)
            new = HeldAlert(
                labels,
                alert_annotations(alert) or (held.annotations if held else {}),
                min(begun, ends),
                ends,
                alert.get("generator_url") or (held.generator_url if held else ""),
                now,
                tenant=tenant,
            )
            return self._put(self.resolved, self.firing, key, new)
        held = self.firing.get(key)
        new = HeldAlert(
            labels,
            alert_annotations(alert),
            starts or (held.starts_at if held else now),
            ends,
            alert.get("generator_url", ""),
            now,
            tenant=tenant,
        )
        return self._put(self.firing, self.resolved, key, new)

    def _put(
        self,
        into: dict[LabelSet, HeldAlert],
        out_of: dict[LabelSet, HeldAlert],
        key: LabelSet,
        new: HeldAlert,
    ) -> bool:
        current = into.get(key)
        self._dirty.add(key)
        if current == new:
            current.updated = new.updated
            return False
        if out_of.pop(key, None) is None and current is None:
            self._held[new.tenant] += 1
        self.version += 1
        new.version = self.version
        into[key] = new
        return True

    def handle(self, records: list[Record]) -> None:
        """Queue consumer: apply native alert records."""
        self.publish([alert for record in records for alert in orjson.loads(record.payload)])

    def publish(self, alerts: list[dict[str, Any]]) -> None:
        """Apply alerts (native or derived); notify when something changed."""
        changed = False
        for alert in alerts:
            changed = self.apply(alert) or changed
        if changed:
            self.expire()
            for listener in self._listeners:
                listener()

    def expire(self) -> None:
        """Forget resolved alerts older than the retention."""
        horizon = self._wall() - self._retention
        for key in [k for k, held in self.resolved.items() if held.updated < horizon]:
            self._held[self.resolved.pop(key).tenant] -= 1
            self._dirty.add(key)

    def changes(self, limit: int | None = None) -> StateChanges:
        """`StatefulSink`: the alerts changed since the last call (at most `limit`), one row
        each."""
        rows: StateChanges = {}
        while self._dirty and len(rows) != limit:
            key = self._dirty.pop()
            held, status = self.firing.get(key), "firing"
            if held is None:
                held, status = self.resolved.get(key), "resolved"
            rows[orjson.dumps(key)] = (
                None if held is None else orjson.dumps({"status": status, **asdict(held)})
            )
        return rows

    def restore(self, rows: list[tuple[bytes, bytes]]) -> None:
        """`StatefulSink`: the held alerts from their rows (at start, before the queue
        consumer runs); versions go on from the highest."""
        for raw_key, raw_value in rows:
            item = orjson.loads(raw_value)
            into = self.firing if item.pop("status") == "firing" else self.resolved
            held = HeldAlert(**item)
            into[tuple((name, value) for name, value in orjson.loads(raw_key))] = held
            self._held[held.tenant] += 1
            self.version = max(self.version, held.version)
        self.expire()
        if rows:
            log.info("restored %d firing and %d resolved alerts",
                     len(self.firing), len(self.resolved))

    def snapshot(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """What `GET /api/v1/alerts` shows: the firing alerts; with a `tenant`
        (authentication on), those of its own (its `tenant` label)."""
        return [
            {
                "labels": held.labels,
                "annotations": held.annotations,
                "starts_at": held.starts_at,
                "ends_at": held.ends_at,
                "generator_url": held.generator_url,
                "updated": held.updated,
            }
            for held in self.firing.values()
            if tenant is None or held.labels.get(TENANT) == tenant
        ]
