"""The alerts the collector holds: firing ones by identity, recently resolved ones."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from flext_observability.pipeline.queue import Record

LabelSet = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class HeldAlert:
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None
    generator_url: str
    updated: float


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


class AlertState:
    """Firing alerts keyed by label set; a `resolved` report moves one to `resolved`."""

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall = wall_clock
        self.firing: dict[LabelSet, HeldAlert] = {}
        self.resolved: dict[LabelSet, HeldAlert] = {}

    def apply(self, alert: dict[str, Any]) -> None:
        labels = alert_labels(alert)
        key = tuple(sorted(labels.items()))
        now = self._wall()
        starts = alert.get("starts_at")
        ends = alert.get("ends_at")
        if alert["status"] == "resolved":
            held = self.firing.pop(key, None) or self.resolved.get(key)
            self.resolved[key] = HeldAlert(
                labels,
                alert_annotations(alert) or (held.annotations if held else {}),
                held.starts_at if held else (starts / 1e9 if starts else now),
                ends / 1e9 if ends else now,
                alert.get("generator_url", ""),
                now,
            )
            return
        held = self.firing.get(key)
        self.resolved.pop(key, None)
        self.firing[key] = HeldAlert(
            labels,
            alert_annotations(alert),
            starts / 1e9 if starts else (held.starts_at if held else now),
            ends / 1e9 if ends else None,
            alert.get("generator_url", ""),
            now,
        )

    def handle(self, records: list[Record]) -> None:
        for record in records:
            for alert in orjson.loads(record.payload):
                self.apply(alert)

    def snapshot(self) -> list[dict[str, Any]]:
        """What `GET /api/v1/alerts` shows: the firing alerts."""
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
        ]
