"""Series admission, the processor before the queue for metrics: a request whose series the
metric store could not hold (a reserved name, a type conflict, a series limit) is refused
at ingest, before it is queued; what is admitted is held in the store (a reservation)
until the Prometheus exporter applies it. The builder places it in the intake when the
Prometheus exporter is on."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from flext_observability.exporters.prometheus.otlp_metrics import admit_otlp
from flext_observability.exporters.prometheus.store import LabelKey, MetricStore, Reservation
from flext_observability.models.errors import ItemError
from flext_observability.models.wire import MetricsDigest, series_key
from flext_observability.pipeline.intake import Admitted, Inadmissible


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


class SeriesAdmission:
    """`pipeline.intake.Admission` over the metric store."""

    def __init__(self, store: MetricStore) -> None:
        self.store = store

    def admit(self, metrics: MetricsDigest) -> Reservation:
        """The reservation of validated native metrics, or Inadmissible naming the items the
        store would refuse: a reserved name, a type conflict (also a name another family
        exposes), a series limit. A pass over the runs; series keys are read only near a
        limit, and not at all for a request that updates only series the store holds (the
        usual one: the store has a plan for it)."""
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
        if store.plan(metrics.fingerprint()) is not None:
            reservation.bound = upper
            reservation.source = partial(_native_series, store, names, metrics)
            return reservation
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
