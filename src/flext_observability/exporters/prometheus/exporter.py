"""The Prometheus exporter: consumes metrics from the queue into the MetricStore."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from flext_observability.exporters.prometheus.otlp_metrics import apply_otlp
from flext_observability.exporters.prometheus.store import (
    LabelKey,
    MetricStore,
    SeriesRejected,
    bucket_bounds,
    native_labels,
)
from flext_observability.models.errors import ItemError
from flext_observability.pipeline.queue import Record
from flext_observability.receivers.native import NATIVE_JSON, OTLP_PROTOBUF
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)

NAME = "prometheus"


class PrometheusExporter:
    """Applies queued metric records to the store; refuses at ingest what it could not hold."""

    def __init__(self, store: MetricStore, telemetry: SelfTelemetry) -> None:
        self.store = store
        self._telemetry = telemetry
        telemetry.exporter_up.labels(NAME).set(1)

    def admit(self, items: list[dict[str, Any]]) -> list[ItemError]:
        """Errors for validated native metrics the store would refuse: a type conflict or a
        series limit. One cheap pass; series keys are built only near a limit."""
        store = self.store
        families = store.families
        errors = []
        kinds: dict[str, str] = {}
        names = [store.family_name(item["name"], item["type"]) for item in items]
        for index, (item, name) in enumerate(zip(items, names, strict=True)):
            kind = item["type"]
            known = kinds.setdefault(name, kind)
            family = families.get(name)
            if known != kind or (family is not None and family.kind != kind):
                other = family.kind if family is not None and family.kind != kind else known
                errors.append(
                    ItemError(index, "type", f"metric '{name}' is a {other}, not a {kind}")
                )
        if errors or not store.could_pass_limits(len(items)):
            return errors
        wanted: dict[str, set[LabelKey]] = {}
        for item, name in zip(items, names, strict=True):
            wanted.setdefault(name, set()).add(
                native_labels(item["service"], item.get("instance", ""), item.get("labels"))
            )
        try:
            store.check_new_series(wanted)
        except SeriesRejected as exc:
            if exc.service is not None:
                index = next(i for i, item in enumerate(items) if item["service"] == exc.service)
                return [ItemError(index, "service", exc.message)]
            index = names.index(exc.metric) if exc.metric in wanted else None
            return [ItemError(index, "name", exc.message)]
        return []

    def handle(self, records: list[Record]) -> None:
        applied = 0
        dropped: dict[str, int] = {}
        for record in records:
            if record.encoding == NATIVE_JSON:
                data = record.decoded
                if data is None:
                    data = orjson.loads(record.payload)
                ok, bad = self._apply_native(data)
                if bad:
                    dropped["rejected_series"] = dropped.get("rejected_series", 0) + bad
            elif record.encoding == OTLP_PROTOBUF:
                outcome = apply_otlp(self.store, record.payload)
                ok = outcome.applied
                for reason, count in outcome.dropped.items():
                    dropped[reason] = dropped.get(reason, 0) + count
            else:
                ok = 0
                dropped["unknown_encoding"] = dropped.get("unknown_encoding", 0) + record.items
            applied += ok
        self._telemetry.exported.labels(NAME).inc(applied)
        for reason, count in dropped.items():
            self._telemetry.dropped.labels(NAME, reason).inc(count)
            log.warning("prometheus exporter dropped %d data points: %s", count, reason)

    def _apply_native(self, data: Any) -> tuple[int, int]:
        items = data if isinstance(data, list) else [data]
        store = self.store
        now = store.now()
        dropped = 0
        last: tuple[str, str] | None = None
        family = None
        for m in items:
            kind, name = m["type"], m["name"]
            if (kind, name) != last:
                last = (kind, name)
                try:
                    family = store.family(
                        store.family_name(name, kind), kind,
                        m.get("description", ""), m.get("unit", ""),
                    )
                except SeriesRejected:
                    family = None
            if family is None:
                dropped += 1
                continue
            key = store.native_key(m["service"], m.get("instance", ""), m.get("labels"))
            if kind == "counter":
                ok = store.add(family, key, m["value"], now)
            elif kind == "gauge":
                ok = store.set(family, key, m["value"], now)
            else:
                ok = store.observe(family, key, m["value"], bucket_bounds(m.get("buckets")), now)
            if not ok:
                dropped += 1
        return len(items) - dropped, dropped
