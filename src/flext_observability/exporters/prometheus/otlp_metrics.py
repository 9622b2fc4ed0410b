"""OTLP metrics into the MetricStore, per the OpenTelemetry Prometheus compatibility spec.

- `service.namespace/service.name` -> `job`, `service.instance.id` -> `instance`; the other
  resource attributes go to `target_info`.
- Monotonic sums are counters (`_total`), other sums and gauges are gauges; histograms and
  summaries keep their buckets/quantiles. Delta temporality is accumulated to cumulative.
- Attribute keys that sanitize to one label name are merged: their values joined with `;`
  in the order of the original keys.
- Points older than the series' last point are ignored (out of order).
- A point flagged "no recorded value" (OTLP's staleness marker) removes its series.
- The instrumentation scope's name, version and attributes become `otel_scope_name`,
  `otel_scope_version` and `otel_scope_<key>` labels; a point's own attribute of the same
  label name wins over a scope attribute, and `job`, `instance` and the scope's name and
  version over both.
- Exponential histograms become explicit-bucket histograms, as the OpenTelemetry
  Collector's Prometheus exporter does for the text format (`exponential_buckets`).

`admit_otlp` decides before a request is answered what the store refuses (types, reserved
names, series limits); `apply_otlp` applies what was admitted, one metric at a time.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    SummaryDataPoint,
)

from flext_observability.exporters.prometheus.naming import metric_name
from flext_observability.exporters.prometheus.store import (
    Family,
    Histogram,
    LabelKey,
    MetricStore,
    Reservation,
    Scalar,
    SeriesRejected,
    Summary,
)
from flext_observability.models.labels import label_name
from flext_observability.models.native import TENANT, TENANT_ATTRIBUTE
from flext_observability.models.otlp import any_value_text, delete_entries, drop_empty
from flext_observability.pipeline.intake import Admitted, Rejected

log = logging.getLogger(__name__)

DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
NO_RECORDED_VALUE = 1
TARGET_INFO = "target_info"
_MAX_REASONS = 5
_FIELDS = ("resource_metrics", "scope_metrics", "metrics")


@dataclass(slots=True)
class Outcome:
    applied: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count


def _labels(attributes: Iterable[KeyValue]) -> dict[str, str]:
    """Attributes as labels; keys that sanitize to one name are joined, as the spec says:
    values with `;`, in the order of the original keys."""
    labels: dict[str, str] = {}
    merged = False
    for kv in attributes:
        name = label_name(kv.key)
        if name in labels:
            merged = True
            break
        labels[name] = any_value_text(kv.value)
    if not merged:
        return labels
    labels = {}
    for kv in sorted(attributes, key=lambda kv: kv.key):
        name = label_name(kv.key)
        text = any_value_text(kv.value)
        labels[name] = f"{labels[name]};{text}" if name in labels else text
    return labels


@dataclass(frozen=True, slots=True)
class ScopeLabels:
    """The labels a point gets from its resource and scope: `base` (job, instance, tenant,
    the scope's name and version) wins over the point's attributes, which win over `under`
    (the scope's attributes)."""

    base: dict[str, str]
    under: dict[str, str] = field(default_factory=dict)


def _key(scope: ScopeLabels, attributes: Iterable[KeyValue]) -> LabelKey:
    labels = dict(scope.under)
    labels.update(_labels(attributes))
    labels.update(scope.base)
    return tuple(sorted(labels.items()))


def _job_instance(
    resource_attributes: Iterable[KeyValue],
) -> tuple[dict[str, str], list[KeyValue]]:
    """(job/instance labels, and tenant when authentication set one; the other resource
    attributes, for target_info). The tenant is a label, as on native metrics."""
    raw: dict[str, str] = {}
    others = []
    for kv in resource_attributes:
        if kv.key in ("service.name", "service.namespace", "service.instance.id",
                      TENANT_ATTRIBUTE):
            raw[kv.key] = any_value_text(kv.value)
        else:
            others.append(kv)
    name = raw.get("service.name", "")
    namespace = raw.get("service.namespace", "")
    instance = raw.get("service.instance.id", "")
    tenant = raw.get(TENANT_ATTRIBUTE)
    base = {} if tenant is None else {TENANT: tenant}
    job = f"{namespace}/{name}" if namespace and name else name or namespace
    if job:
        base["job"] = job
    if instance:
        base["instance"] = instance
    return base, others


def _target_info_key(base: dict[str, str], others: list[KeyValue]) -> LabelKey | None:
    """The target_info series of a resource; None when it has none."""
    return _key(ScopeLabels(base), others) if others and base else None


def _scope_labels(base: dict[str, str], scope: InstrumentationScope) -> ScopeLabels:
    labels = dict(base)
    if scope.name:
        labels["otel_scope_name"] = scope.name
    if scope.version:
        labels["otel_scope_version"] = scope.version
    under = {f"otel_scope_{name}": text for name, text in _labels(scope.attributes).items()}
    return ScopeLabels(labels, under)


def family_of(metric: Metric) -> tuple[str, str, str] | None:
    """(data field, family name, family kind) of a metric; None without data."""
    data = metric.WhichOneof("data")
    if data is None:
        return None
    monotonic = data == "sum" and metric.sum.is_monotonic
    shape = "histogram" if data == "exponential_histogram" else data
    kind = "counter" if monotonic else {"gauge": "gauge", "sum": "gauge"}.get(shape, shape)
    name = metric_name(metric.name, metric.unit, kind=shape, monotonic=monotonic)
    if kind == "counter" and name.endswith("_total"):
        name = name[: -len("_total")]
    return data, name, kind


@dataclass(slots=True)
class _Refusals:
    """What admission refused in one request."""

    points: int = 0
    problems: int = 0
    reasons: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, points: int, reason: str, message: str) -> None:
        self.points += points
        self.problems += 1
        self.counts[reason] = self.counts.get(reason, 0) + points
        if len(self.reasons) < _MAX_REASONS:
            self.reasons.append(message)

    def rejected(self) -> Rejected:
        more = self.problems - len(self.reasons)
        message = "; ".join(self.reasons) + (f" (and {more} more)" if more else "")
        return Rejected(self.points, message, self.counts)


def admit_otlp(store: MetricStore, payload: bytes) -> Admitted:
    """The points of a (validated) request that the store can take, and a reservation for
    them: a metric whose name is reserved, is held as another kind or would expose a name
    another family exposes is refused with its points; past a series limit, the points of
    new series are refused. Refused points are left out of the payload."""
    request = ExportMetricsServiceRequest.FromString(payload)
    reservation = Reservation()
    refusals = _Refusals()
    removals: list[tuple[object, list[int]]] = []
    # (metric name, points, scope labels, where) of the admitted metrics, for the limits
    admitted: list[tuple[str, Any, ScopeLabels, str]] = []
    infos: list[LabelKey] = []
    upper: dict[str, int] = {}
    total = 0
    for ri, resource_metrics in enumerate(request.resource_metrics):
        base, others = _job_instance(resource_metrics.resource.attributes)
        info = _target_info_key(base, others)
        for si, scope_metrics in enumerate(resource_metrics.scope_metrics):
            labels = _scope_labels(base, scope_metrics.scope)
            dropped = []
            for mi, metric in enumerate(scope_metrics.metrics):
                found = family_of(metric)
                if found is None:
                    continue
                data, name, kind = found
                points = getattr(metric, data).data_points
                if not points:  # kept in a body that had nothing to reject; never applied
                    continue
                where = f"resourceMetrics[{ri}].scopeMetrics[{si}].metrics[{mi}]"
                problem = store.name_problem(name, kind, reservation.kinds)
                if problem is not None:
                    reason, message = problem
                    refusals.add(len(points), reason, f"{where}: {message}")
                    dropped.append(mi)
                    continue
                reservation.kinds[name] = kind
                total += len(points)
                upper[name] = upper.get(name, 0) + len(points)
                admitted.append((name, points, labels, where))
                if info is not None:
                    infos.append(info)
                    info = None
            if dropped:
                removals.append((scope_metrics.metrics, dropped))
    if infos:
        upper[TARGET_INFO] = len(infos)
        reservation.kinds[TARGET_INFO] = "gauge"
    if store.far_from_limits(upper):
        reservation.upper = upper
    else:
        store.refine()
        for info in infos:
            # A resource's own series: never refused alone (its points carry the data).
            store.admit_series(TARGET_INFO, info, reservation)
        removals.extend(_admit_series(store, admitted, reservation, refusals))
    if refusals.points:
        for items, indices in removals:
            delete_entries(items, indices)
        drop_empty(request.resource_metrics, _FIELDS)
        payload = request.SerializeToString()
    if reservation.upper:
        reservation.source = partial(_series_of, payload)
    accepted = total - refusals.counts.get("series_limit", 0)
    return Admitted(payload, accepted, refusals.rejected(), reservation)


def _series_of(payload: bytes) -> Iterator[tuple[str, LabelKey]]:
    """(family, series key) of every point of an admitted request, and its target_info."""
    request = ExportMetricsServiceRequest.FromString(payload)
    for resource_metrics in request.resource_metrics:
        base, others = _job_instance(resource_metrics.resource.attributes)
        info = _target_info_key(base, others)
        if info is not None:
            yield TARGET_INFO, info
        for scope_metrics in resource_metrics.scope_metrics:
            labels = _scope_labels(base, scope_metrics.scope)
            for metric in scope_metrics.metrics:
                found = family_of(metric)
                if found is not None:
                    for point in getattr(metric, found[0]).data_points:
                        yield found[1], _key(labels, point.attributes)


def _admit_series(
    store: MetricStore,
    admitted: list[tuple[str, Any, ScopeLabels, str]],
    reservation: Reservation,
    refusals: _Refusals,
) -> list[tuple[object, list[int]]]:
    """Points by series near a limit: those of a new series past one are refused."""
    removals = []
    for name, points, labels, where in admitted:
        refused = []
        for pi, point in enumerate(points):
            problem = store.admit_series(name, _key(labels, point.attributes), reservation)
            if problem is not None:
                refusals.add(1, "series_limit", f"{where}.dataPoints[{pi}]: {problem[1]}")
                refused.append(pi)
        if refused:
            removals.append((points, refused))
    return removals


def apply_otlp(store: MetricStore, payload: bytes) -> Outcome:
    """Apply an admitted request; an error in one metric costs only that metric's points."""
    request = ExportMetricsServiceRequest.FromString(payload)
    outcome = Outcome()
    now = store.now()
    for resource_metrics in request.resource_metrics:
        base, others = _job_instance(resource_metrics.resource.attributes)
        info = _target_info_key(base, others)
        if info is not None:
            store.set(store.family(TARGET_INFO, "gauge", "Target metadata"), info, 1.0, now)
        for scope_metrics in resource_metrics.scope_metrics:
            scope_labels = _scope_labels(base, scope_metrics.scope)
            for metric in scope_metrics.metrics:
                try:
                    _apply_metric(store, metric, scope_labels, now, outcome)
                except Exception:
                    found = family_of(metric)
                    points = len(getattr(metric, found[0]).data_points) if found else 0
                    outcome.drop("apply_error", points)
                    log.exception("applying OTLP metric %r failed", metric.name)
    return outcome


def _apply_metric(
    store: MetricStore, metric: Metric, base: ScopeLabels, now: float, outcome: Outcome
) -> None:
    found = family_of(metric)
    if found is None:
        return
    data, name, kind = found
    if not getattr(metric, data).data_points:
        return
    body = getattr(metric, data)
    try:
        family = store.family(name, kind, metric.description)
    except SeriesRejected as exc:
        outcome.drop("type_conflict", len(body.data_points))
        log.warning("OTLP metric not applied: %s", exc.message)
        return
    delta = getattr(body, "aggregation_temporality", 0) == DELTA
    for point in body.data_points:
        key = _key(base, point.attributes)
        existing = family.series.get(key)
        if existing is not None and point.time_unix_nano < existing.time_ns:
            outcome.drop("out_of_order")
            continue
        if point.flags & NO_RECORDED_VALUE:
            # The series ended: it leaves /metrics now (a scrape then marks it stale), as
            # the Collector's Prometheus exporter does.
            store.remove(family, key)
            continue
        _apply_point(store, family, key, data, point, delta, existing, now)
        family.series[key].time_ns = point.time_unix_nano
        outcome.applied += 1


def _apply_point(
    store: MetricStore,
    family: Family,
    key: LabelKey,
    data: str,
    point: NumberDataPoint | HistogramDataPoint | ExponentialHistogramDataPoint | SummaryDataPoint,
    delta: bool,
    existing: Scalar | Histogram | Summary | None,
    now: float,
) -> None:
    if isinstance(point, NumberDataPoint):  # gauge, sum
        value = float(getattr(point, point.WhichOneof("value") or "as_double"))
        if delta and data == "sum":
            store.add(family, key, value, now)
        else:
            store.set(family, key, value, now)
        return
    if isinstance(point, ExponentialHistogramDataPoint):
        _apply_exponential(store, family, key, point, delta, existing, now)
        return
    if isinstance(point, HistogramDataPoint):
        bounds = tuple(point.explicit_bounds)
        counts = [float(c) for c in point.bucket_counts]
        if not counts:
            counts = [0.0] * len(bounds) + [float(point.count)]
        total = point.sum if point.HasField("sum") else 0.0
        count = float(point.count)
        if delta and isinstance(existing, Histogram) and existing.bounds == bounds:
            counts = [a + b for a, b in zip(existing.counts, counts, strict=True)]
            total += existing.sum
            count += existing.count
        store.set_histogram(family, key, bounds, counts, total, count, now)
        return
    quantiles = tuple((q.quantile, q.value) for q in point.quantile_values)
    store.set_summary(family, key, quantiles, point.sum, float(point.count), now)


def exponential_buckets(point: ExponentialHistogramDataPoint) -> tuple[list[float], list[float]]:
    """(upper bounds, per-bucket counts) of an exponential histogram point; the last count
    is the +Inf bucket. Bucket `i` of scale `s` holds (2^(i/2^s), 2^((i+1)/2^s)], negative
    buckets their mirror; the zero bucket ends at the zero threshold. Bounds that would not
    increase fold into their neighbour; bounds past the float range into the outer buckets."""
    step = _power2(-point.scale) if point.scale < 1024 else 0.0
    negative, positive = point.negative, point.positive
    edges = [
        (-_bound(negative.offset + i, step), float(negative.bucket_counts[i]))
        for i in reversed(range(len(negative.bucket_counts)))
    ]
    edges.append((point.zero_threshold, float(point.zero_count)))
    edges += [
        (_bound(positive.offset + i + 1, step), float(count))
        for i, count in enumerate(positive.bucket_counts)
    ]
    bounds: list[float] = []
    counts: list[float] = []
    carried = 0.0
    for bound, count in edges:
        if bound == -math.inf:
            carried += count
        elif bound == math.inf:
            break  # this bucket and the ones above are the +Inf bucket's
        elif bounds and not bound > bounds[-1]:
            counts[-1] += count + carried
            carried = 0.0
        else:
            bounds.append(bound)
            counts.append(count + carried)
            carried = 0.0
    counts.append(max(0.0, float(point.count) - sum(counts)))
    return bounds, counts


def _bound(index: int, step: float) -> float:
    """2^(index * step); index 0 is 1 whatever the step (an infinite one included)."""
    return _power2(index * step) if index else 1.0


def _power2(exponent: float) -> float:
    try:
        return math.pow(2.0, exponent)
    except OverflowError:
        return math.inf


def _apply_exponential(
    store: MetricStore,
    family: Family,
    key: LabelKey,
    point: ExponentialHistogramDataPoint,
    delta: bool,
    existing: Scalar | Histogram | Summary | None,
    now: float,
) -> None:
    """A delta point adds to the series' buckets, on the union of both bounds (each bucket's
    count lands in the union bucket with its upper bound)."""
    bounds, counts = exponential_buckets(point)
    total = point.sum if point.HasField("sum") else 0.0
    count = float(point.count)
    if delta and isinstance(existing, Histogram):
        union = sorted({*existing.bounds, *bounds})
        merged = [0.0] * (len(union) + 1)
        for old_bounds, old_counts in ((existing.bounds, existing.counts), (bounds, counts)):
            for bound, bucket in zip((*old_bounds, math.inf), old_counts, strict=True):
                merged[bisect.bisect_left(union, bound)] += bucket
        bounds, counts = union, merged
        total += existing.sum
        count += existing.count
    store.set_histogram(family, key, tuple(bounds), counts, total, count, now)
