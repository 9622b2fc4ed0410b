"""The Prometheus exporter: consumes metrics from the queue into the MetricStore."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial

from flext_observability.exporters.prometheus.naming import unit_suffix
from flext_observability.exporters.prometheus.otlp_metrics import admit_otlp, apply_otlp
from flext_observability.exporters.prometheus.store import (
    LabelKey,
    MetricStore,
    Reservation,
    SeriesRejected,
    bucket_bounds,
)
from flext_observability.models.errors import ItemError
from flext_observability.models.wire import MetricsDigest, series_key, unpack_digest
from flext_observability.pipeline.intake import (
    METRICS_DIGEST,
    OTLP_PROTOBUF,
    Admitted,
    Inadmissible,
)
from flext_observability.pipeline.queue import Record
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)


def _native_series(
    store: MetricStore, names: list[str], metrics: MetricsDigest
) -> Iterator[tuple[str, LabelKey]]:
    """(family, series key) of every item of validated native metrics."""
    series = metrics.series()
    index = 0
    for run, name in zip(metrics.runs, names, strict=True):
        for key in series[index:index + run.count]:
            yield name, store.label_key(key)
        index += run.count

NAME = "prometheus"


class PrometheusExporter:
    """Applies queued metric records to the store; refuses at ingest what it could not hold."""

    def __init__(self, store: MetricStore, telemetry: SelfTelemetry) -> None:
        self.store = store
        self._telemetry = telemetry
        # Other encodings of metric records and what applies them (the pushed groups):
        # record -> (items applied, items dropped by reason).
        self.appliers: dict[str, Callable[[Record], tuple[int, dict[str, int]]]] = {}
        telemetry.exporter_up.labels(NAME).set(1)

    def admit(self, metrics: MetricsDigest) -> Reservation:
        """The reservation of validated native metrics, or Inadmissible naming the items the
        store would refuse: a reserved name, a type conflict (also a name another family
        exposes), a series limit. A pass over the runs; series keys are read only near a
        limit."""
        store = self.store
        reservation = Reservation()
        kinds = reservation.kinds
        errors: list[ItemError] = []
        reason = ""
        names = []
        upper: dict[str, int] = {}
        index = 0
        for run in metrics.runs:
            kind = run.type
            name = store.family_name(run.name, kind)
            names.append(name)
            upper[name] = upper.get(name, 0) + run.count
            problem = store.name_problem(name, kind, kinds)
            if problem is not None:
                reason, message = problem
                where = "name" if reason == "reserved_name" else "type"
                errors.extend(ItemError(i, where, message) for i in range(index, index + run.count))
            else:
                kinds[name] = kind
            index += run.count
        if errors:
            raise Inadmissible(errors, reason)
        if store.far_from_limits(upper):
            reservation.upper = upper
            reservation.source = partial(_native_series, store, names, metrics)
            return reservation
        store.refine()
        series = metrics.series()
        index = 0
        for run, name in zip(metrics.runs, names, strict=True):
            for key in series[index:index + run.count]:
                problem = store.admit_series(name, store.label_key(key), reservation)
                if problem is not None:
                    where, message = problem
                    first = index if where == "name" else next(
                        i for i, other in enumerate(series)
                        if series_key(other)[0] == series_key(key)[0]
                    )
                    raise Inadmissible([ItemError(first, where, message)], "series_limit")
            index += run.count
        return reservation

    def admit_otlp(self, payload: bytes) -> Admitted:
        """The admitted points of a validated OTLP request (`otlp_metrics.admit_otlp`)."""
        return admit_otlp(self.store, payload)

    def hold(self, seq: int, reservation: Reservation) -> None:
        self.store.hold(seq, reservation)

    def release(self, seq: int) -> None:
        self.store.release(seq)

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
        series = metrics.series()
        values = metrics.numbers()
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
        return len(series) - sum(dropped.values()), dropped
