"""The Prometheus exporter: consumes metrics from the queue into the MetricStore (what the
store can hold is decided before the queue, by `processors.admission`)."""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable
from functools import partial

from flext_observability.exporters.prometheus.naming import unit_suffix
from flext_observability.exporters.prometheus.otlp_metrics import apply_otlp
from flext_observability.exporters.prometheus.store import (
    Histogram,
    MetricStore,
    PlannedRun,
    Scalar,
    SeriesRejected,
    bucket_bounds,
)
from flext_observability.models.wire import MetricsDigest, unpack_digest
from flext_observability.pipeline.intake import (
    METRICS_DIGEST,
    OTLP_PROTOBUF,
)
from flext_observability.pipeline.queue import Record
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)


NAME = "prometheus"


class PrometheusExporter:
    """Applies queued metric records to the store."""

    def __init__(self, store: MetricStore, telemetry: SelfTelemetry) -> None:
        self.store = store
        self._telemetry = telemetry
        # Other encodings of metric records and what applies them (the pushed groups):
        # record -> (items applied, items dropped by reason).
        self.appliers: dict[str, Callable[[Record], tuple[int, dict[str, int]]]] = {}
        telemetry.exporter_up.labels(NAME).set(1)

    def handle(self, records: list[Record]) -> None:
        """Apply each record on its own: an error in one costs only its own items (counted
        as `apply_error`), never its neighbours'."""
        applied = 0
        dropped: dict[str, int] = {}
        for record in records:
            try:
                ok, lost = self._apply(record)
            except Exception:
                ok, lost = 0, {"apply_error": record.items}
                log.exception("prometheus exporter failed to apply record %d", record.seq)
            finally:
                self.store.release(record.seq)
            applied += ok
            for reason, count in lost.items():
                dropped[reason] = dropped.get(reason, 0) + count
        self._telemetry.exported.labels(NAME).inc(applied)
        for reason, count in dropped.items():
            self._telemetry.dropped.labels(NAME, reason).inc(count)
            log.warning("prometheus exporter dropped %d data points: %s", count, reason)

    def _apply(self, record: Record) -> tuple[int, dict[str, int]]:
        if record.encoding == METRICS_DIGEST:
            data = record.decoded
            if data is None:
                data = unpack_digest(record.payload)
            return self._apply_native(data)
        if record.encoding == OTLP_PROTOBUF:
            outcome = apply_otlp(self.store, record.payload)
            return outcome.applied, outcome.dropped
        applier = self.appliers.get(record.encoding)
        if applier is not None:
            return applier(record)
        return 0, {"unknown_encoding": record.items}

    def _apply_native(self, metrics: MetricsDigest) -> tuple[int, dict[str, int]]:
        store = self.store
        now = store.now()
        values = metrics.numbers()
        fingerprint = metrics.fingerprint()
        plan = store.plan(fingerprint)
        if plan is not None and self._apply_plan(plan, metrics, values, now):
            return len(values), {}
        series = metrics.series()
        label_key = store.label_key
        dropped: dict[str, int] = {}
        start = 0
        for run in metrics.runs:
            end = start + run.count
            kind = run.type
            keys, numbers = series[start:end], values[start:end]
            try:
                family = store.family(
                    store.family_name(run.name, kind), kind, run.description,
                    unit_suffix(run.unit),
                )
                if kind in ("counter", "gauge"):
                    store.scalars(family, keys, numbers, now, add=kind == "counter")
                else:
                    bounds = bucket_bounds(run.buckets)
                    for key, value in zip(keys, numbers, strict=True):
                        store.observe(family, label_key(key), value, bounds, now)
            except SeriesRejected as exc:
                dropped["type_conflict"] = dropped.get("type_conflict", 0) + run.count
                log.warning("native metric not applied: %s", exc.message)
            except Exception:
                dropped["apply_error"] = dropped.get("apply_error", 0) + run.count
                log.exception("applying native metric %r failed", run.name)
            start = end
        if not dropped:
            store.learn(fingerprint, partial(_plan, store, metrics))
        return len(series) - sum(dropped.values()), dropped

    def _apply_plan(
        self, plan: list[PlannedRun], metrics: MetricsDigest, values: array[float], now: float
    ) -> bool:
        """Apply a request by its plan (the series it updates, looked up when a request of
        its fingerprint was applied before); False, having changed nothing, when a family
        of the plan is not the store's any more."""
        store = self.store
        runs = metrics.runs
        for run, planned in zip(runs, plan, strict=True):
            family = store.family(
                store.family_name(run.name, run.type), run.type, run.description,
                unit_suffix(run.unit),
            )
            if family is not planned.family:
                return False
        start = 0
        for planned in plan:
            end = start + len(planned.keys)
            numbers = values[start:end]
            if planned.histograms:
                for histogram, value in zip(planned.histograms, numbers, strict=True):
                    histogram.observe(value)
                    histogram.updated = now
            elif planned.family.kind == "counter":
                for scalar, value in zip(planned.scalars, numbers, strict=True):
                    scalar.value += value
                    scalar.updated = now
            else:
                for scalar, value in zip(planned.scalars, numbers, strict=True):
                    scalar.value = value
                    scalar.updated = now
            planned.family.dirty.update(planned.keys)
            start = end
        return True


def _plan(store: MetricStore, metrics: MetricsDigest) -> list[PlannedRun]:
    """The series each run of an applied request updated, in its order."""
    series = metrics.series()
    plan = []
    start = 0
    for run in metrics.runs:
        end = start + run.count
        family = store.families[store.family_name(run.name, run.type)]
        keys = [store.label_key(key) for key in series[start:end]]
        planned = PlannedRun(family, keys)
        for key in keys:
            found = family.series[key]
            if isinstance(found, Histogram):
                planned.histograms.append(found)
            elif isinstance(found, Scalar):
                planned.scalars.append(found)
        plan.append(planned)
        start = end
    return plan
