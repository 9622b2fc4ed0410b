"""OTLP metrics into the MetricStore, per the OpenTelemetry Prometheus compatibility spec.

- `service.namespace/service.name` -> `job`, `service.instance.id` -> `instance`; the other
  resource attributes go to `target_info`.
- Monotonic sums are counters (`_total`), other sums and gauges are gauges; histograms and
  summaries keep their buckets/quantiles. Delta temporality is accumulated to cumulative.
- Points older than the series' last point are ignored (out of order).
- Exponential histograms become explicit-bucket histograms, as the OpenTelemetry
  Collector's Prometheus exporter does for the text format (`exponential_buckets`).
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass, field

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    ExponentialHistogramDataPoint,
    Metric,
)

from flext_observability.exporters.prometheus.naming import label_name, metric_name
from flext_observability.exporters.prometheus.store import (
    Family,
    Histogram,
    LabelKey,
    MetricStore,
    Scalar,
    SeriesRejected,
    Summary,
)
from flext_observability.models.native import TENANT, TENANT_ATTRIBUTE

log = logging.getLogger(__name__)

DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
NO_RECORDED_VALUE = 1


@dataclass(slots=True)
class Outcome:
    applied: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count


def any_value_text(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind in ("int_value", "double_value"):
        return str(getattr(value, kind))
    return str(getattr(value, kind)).replace("\n", " ").strip()


def _labels(attributes: list[KeyValue] | object) -> dict[str, str]:
    labels: dict[str, str] = {}
    for kv in attributes:  # type: ignore[attr-defined]
        name = label_name(kv.key)
        text = any_value_text(kv.value)
        # Keys that sanitize to the same name are joined, as the spec says.
        labels[name] = f"{labels[name]};{text}" if name in labels else text
    return labels


def _key(base: dict[str, str], attributes: object) -> LabelKey:
    labels = _labels(attributes)
    labels.update(base)
    return tuple(sorted(labels.items()))


def _job_instance(resource_attributes: object) -> tuple[dict[str, str], dict[str, str]]:
    """(job/instance labels, and tenant when authentication set one; the other resource
    attributes for target_info). The tenant is a label, as on native metrics."""
    raw = {kv.key: any_value_text(kv.value) for kv in resource_attributes}  # type: ignore[attr-defined]
    name = raw.pop("service.name", "")
    namespace = raw.pop("service.namespace", "")
    instance = raw.pop("service.instance.id", "")
    tenant = raw.pop(TENANT_ATTRIBUTE, None)
    base = {} if tenant is None else {TENANT: tenant}
    job = f"{namespace}/{name}" if namespace and name else name or namespace
    if job:
        base["job"] = job
    if instance:
        base["instance"] = instance
    return base, raw


def apply_otlp(store: MetricStore, payload: bytes) -> Outcome:
    request = ExportMetricsServiceRequest.FromString(payload)
    outcome = Outcome()
    now = store.now()
    for resource_metrics in request.resource_metrics:
        base, other = _job_instance(resource_metrics.resource.attributes)
        if other and base:
            info = store.family("target_info", "gauge", "Target metadata")
            labels = {label_name(k): v for k, v in other.items()}
            labels.update(base)
            store.set(info, tuple(sorted(labels.items())), 1.0, now)
        for scope_metrics in resource_metrics.scope_metrics:
            scope_labels = dict(base)
            if scope_metrics.scope.name:
                scope_labels["otel_scope_name"] = scope_metrics.scope.name
            if scope_metrics.scope.version:
                scope_labels["otel_scope_version"] = scope_metrics.scope.version
            for metric in scope_metrics.metrics:
                _apply_metric(store, metric, scope_labels, now, outcome)
    return outcome


def _apply_metric(
    store: MetricStore, metric: Metric, base: dict[str, str], now: float, outcome: Outcome
) -> None:
    data = metric.WhichOneof("data")
    if data is None:
        return
    monotonic = data == "sum" and metric.sum.is_monotonic
    shape = "histogram" if data == "exponential_histogram" else data
    kind = "counter" if monotonic else {"gauge": "gauge", "sum": "gauge"}.get(shape, shape)
    name = metric_name(metric.name, metric.unit, kind=shape, monotonic=monotonic)
    if kind == "counter" and name.endswith("_total"):
        name = name[: -len("_total")]
    try:
        family = store.family(name, kind, metric.description)
    except SeriesRejected:
        outcome.drop("type_conflict", _point_count(metric, data))
        return
    body = getattr(metric, data)
    delta = getattr(body, "aggregation_temporality", 0) == DELTA
    for point in body.data_points:
        if point.flags & NO_RECORDED_VALUE:
            continue
        key = _key(base, point.attributes)
        existing = family.series.get(key)
        if existing is not None and point.time_unix_nano < existing.time_ns:
            outcome.drop("out_of_order")
            continue
        if _apply_point(store, family, key, data, point, delta, existing, now):
            family.series[key].time_ns = point.time_unix_nano
            outcome.applied += 1
        else:
            outcome.drop("series_limit")


def _point_count(metric: Metric, data: str) -> int:
    return len(getattr(metric, data).data_points)


def _apply_point(
    store: MetricStore,
    family: Family,
    key: LabelKey,
    data: str,
    point: object,
    delta: bool,
    existing: Scalar | Histogram | Summary | None,
    now: float,
) -> bool:
    if data in ("gauge", "sum"):
        value = float(getattr(point, point.WhichOneof("value") or "as_double"))  # type: ignore[attr-defined]
        if delta and data == "sum":
            return store.add(family, key, value, now)
        return store.set(family, key, value, now)
    if data == "exponential_histogram":
        return _apply_exponential(
            store, family, key, point, delta, existing, now  # type: ignore[arg-type]
        )
    if data == "histogram":
        bounds = tuple(point.explicit_bounds)  # type: ignore[attr-defined]
        counts = [float(c) for c in point.bucket_counts]  # type: ignore[attr-defined]
        if not counts:
            counts = [0.0] * len(bounds) + [float(point.count)]  # type: ignore[attr-defined]
        total = point.sum if point.HasField("sum") else 0.0  # type: ignore[attr-defined]
        count = float(point.count)  # type: ignore[attr-defined]
        if delta and isinstance(existing, Histogram) and existing.bounds == bounds:
            counts = [a + b for a, b in zip(existing.counts, counts, strict=True)]
            total += existing.sum
            count += existing.count
        return store.set_histogram(family, key, bounds, counts, total, count, now)
    quantiles = tuple(
        (q.quantile, q.value) for q in point.quantile_values  # type: ignore[attr-defined]
    )
    return store.set_summary(
        family, key, quantiles, point.sum, float(point.count), now  # type: ignore[attr-defined]
    )


def exponential_buckets(point: ExponentialHistogramDataPoint) -> tuple[list[float], list[float]]:
    """(upper bounds, per-bucket counts) of an exponential histogram point; the last count
    is the +Inf bucket. Bucket `i` of scale `s` holds (2^(i/2^s), 2^((i+1)/2^s)], negative
    buckets their mirror; the zero bucket ends at the zero threshold. Bounds that would not
    increase fold into their neighbour; bounds past the float range into the outer buckets."""
    step = 2.0 ** -point.scale if point.scale < 1024 else 0.0
    negative, positive = point.negative, point.positive
    edges = [
        (-_power2((negative.offset + i) * step), float(negative.bucket_counts[i]))
        for i in reversed(range(len(negative.bucket_counts)))
    ]
    edges.append((point.zero_threshold, float(point.zero_count)))
    edges += [
        (_power2((positive.offset + i + 1) * step), float(count))
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
) -> bool:
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
    return store.set_histogram(family, key, tuple(bounds), counts, total, count, now)
