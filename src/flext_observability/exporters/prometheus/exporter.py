"""The Prometheus exporter: consumes metrics from the queue into the MetricStore."""

from __future__ import annotations

import logging

from flext_observability.exporters.prometheus.naming import unit_suffix
from flext_observability.exporters.prometheus.otlp_metrics import apply_otlp
from flext_observability.exporters.prometheus.store import (
    LabelKey,
    MetricStore,
    SeriesRejected,
    bucket_bounds,
)
from flext_observability.models.errors import ItemError
from flext_observability.models.wire import MetricsDigest, series_key, unpack_digest
from flext_observability.pipeline.intake import METRICS_DIGEST, OTLP_PROTOBUF
from flext_observability.pipeline.queue import Record
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)

NAME = "prometheus"


class PrometheusExporter:
    """Applies queued metric records to the store; refuses at ingest what it could not hold."""

    def __init__(self, store: MetricStore, telemetry: SelfTelemetry) -> None:
        self.store = store
        self._telemetry = telemetry
        telemetry.exporter_up.labels(NAME).set(1)

    def admit(self, metrics: MetricsDigest) -> list[ItemError]:
        """Errors for validated native metrics the store would refuse: a type conflict or a
        series limit. A pass over the runs; series keys are read only near a limit."""
        store = self.store
        families = store.families
        errors = []
        kinds: dict[str, str] = {}
        names = []
        index = 0
        for run in metrics.runs:
            kind = run.type
            name = store.family_name(run.name, kind)
            names.append(name)
            known = kinds.setdefault(name, kind)
            family = families.get(name)
            if known != kind or (family is not None and family.kind != kind):
                other = family.kind if family is not None and family.kind != kind else known
                message = f"metric '{name}' is a {other}, not a {kind}"
                errors.extend(
                    ItemError(i, "type", message) for i in range(index, index + run.count)
                )
            index += run.count
        if errors or not store.could_pass_limits(index):
            return errors
        series = metrics.series()
        wanted: dict[str, set[LabelKey]] = {}
        starts: dict[str, int] = {}
        index = 0
        for run, name in zip(metrics.runs, names, strict=True):
            starts.setdefault(name, index)
            wanted.setdefault(name, set()).update(
                store.label_key(key) for key in series[index:index + run.count]
            )
            index += run.count
        try:
            store.check_new_series(wanted)
        except SeriesRejected as exc:
            if exc.service is not None:
                first = next(
                    i for i, key in enumerate(series) if series_key(key)[0] == exc.service
                )
                return [ItemError(first, "service", exc.message)]
            return [ItemError(starts.get(exc.metric), "name", exc.message)]
        return []

    def handle(self, records: list[Record]) -> None:
        applied = 0
        dropped: dict[str, int] = {}
        for record in records:
            if record.encoding == METRICS_DIGEST:
                data = record.decoded
                if data is None:
                    data = unpack_digest(record.payload)
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

    def _apply_native(self, metrics: MetricsDigest) -> tuple[int, int]:
        store = self.store
        now = store.now()
        series = metrics.series()
        values = metrics.numbers()
        label_key = store.label_key
        dropped = 0
        start = 0
        for run in metrics.runs:
            end = start + run.count
            kind = run.type
            try:
                family = store.family(
                    store.family_name(run.name, kind), kind, run.description,
                    unit_suffix(run.unit),
                )
            except SeriesRejected:
                dropped += run.count
                start = end
                continue
            keys, numbers = series[start:end], values[start:end]
            if kind in ("counter", "gauge"):
                dropped += store.scalars(family, keys, numbers, now, add=kind == "counter")
            else:
                bounds = bucket_bounds(run.buckets)
                for key, value in zip(keys, numbers, strict=True):
                    dropped += not store.observe(family, label_key(key), value, bounds, now)
            start = end
        return len(series) - dropped, dropped
