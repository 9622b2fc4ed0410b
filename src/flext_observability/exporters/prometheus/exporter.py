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
from flext_observability.models.native import Metric
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

    def admit(self, items: list[Metric]) -> list[ItemError]:
        """Errors for items the store would refuse: a type conflict or a series limit."""
        store = self.store
        errors = []
        kinds: dict[str, str] = {}
        for index, item in enumerate(items):
            kind = item.type.value
            name = store.family_name(item.name, kind)
            known = kinds.setdefault(name, kind)
            family = store.families.get(name)
            if known != kind or (family is not None and family.kind != kind):
                other = family.kind if family is not None and family.kind != kind else known
                errors.append(
                    ItemError(index, "type", f"metric '{name}' is a {other}, not a {kind}")
                )
        if errors or not store.could_pass_limits(len(items)):
            return errors
        wanted: dict[str, set[LabelKey]] = {}
        for item in items:
            name = store.family_name(item.name, item.type.value)
            wanted.setdefault(name, set()).add(
                native_labels(item.service, item.instance, item.labels)
            )
        try:
            store.check_new_series(wanted)
        except SeriesRejected as exc:
            index = next(
                i for i, item in enumerate(items)
                if store.family_name(item.name, item.type.value) == exc.metric
            ) if exc.metric in wanted else None
            return [ItemError(index, "name", exc.message)]
        return []

    def handle(self, records: list[Record]) -> None:
        applied = 0
        dropped: dict[str, int] = {}
        for record in records:
            if record.encoding == NATIVE_JSON:
                ok, bad = self._apply_native(orjson.loads(record.payload))
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
        for m in items:
            kind = m["type"]
            try:
                family = store.family(
                    store.family_name(m["name"], kind), kind,
                    m.get("description", ""), m.get("unit", ""),
                )
            except SeriesRejected:
                dropped += 1
                continue
            key = native_labels(m["service"], m.get("instance", ""), m.get("labels"))
            if kind == "counter":
                ok = store.add(family, key, m["value"], now)
            elif kind == "gauge":
                ok = store.set(family, key, m["value"], now)
            else:
                ok = store.observe(family, key, m["value"], bucket_bounds(m.get("buckets")), now)
            if not ok:
                dropped += 1
        return len(items) - dropped, dropped
