"""Native metrics as OTLP: what an OTLP exporter sends for the queue's metrics digests.

- counter (an increment) -> a monotonic cumulative Sum: the running total of the series;
- gauge -> a Gauge with the new value;
- histogram (one observation) -> a cumulative Histogram (explicit bounds: the metric's
  `buckets`, else the Prometheus exporter's defaults; count, sum and bucket counts);
- `service` -> the resource's `service.name`, `instance` -> `service.instance.id`, labels
  -> the point's string attributes; name, unit and description as they came; one scope,
  `flext-observability`.

Items of one series in one queued request make one point. Points are stamped when the
exporter converts them (the digest keeps no receive time); a cumulative series starts
(`start_time_unix_nano`) when this exporter first converts it. The running totals live in
memory, one set per exporter: after a restart, or once a series was idle for
`SERIES_IDLE_SECONDS` (or pushed out past `MAX_SERIES`), the series starts again from
zero with a new start time, which OTLP consumers read as a reset.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    Metric,
    ResourceMetrics,
    ScopeMetrics,
)

from flext_observability.exporters.prometheus.store import bucket_bounds
from flext_observability.models.wire import MetricsDigest, series_key

SCOPE = "flext-observability"
SERIES_IDLE_SECONDS = 300.0
MAX_SERIES = 200_000

# (metric name, type, series key of the digest)
SeriesId = tuple[str, str, bytes]


@dataclass(slots=True)
class _Total:
    """A cumulative series: its start, and its running total (or histogram)."""

    start: int
    updated: int
    value: float = 0.0
    bounds: tuple[float, ...] = ()
    counts: list[int] = field(default_factory=list)
    count: int = 0


@dataclass(slots=True)
class _Point:
    """One series' point in the request being built: a gauge's value, or the series'
    running total."""

    labels: dict[str, str]
    total: _Total
    value: float = 0.0


# (service, instance) -> run index -> series key -> point
_Resources = dict[tuple[str, str], dict[int, dict[bytes, _Point]]]


def _attributes(target: RepeatedCompositeFieldContainer[KeyValue],
                values: dict[str, str]) -> None:
    target.extend(KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in values.items())


class NativeMetricsToOtlp:
    """Converts digests in queue order, holding the cumulative totals of their series."""

    def __init__(
        self,
        clock: Callable[[], int] = time.time_ns,
        idle_seconds: float = SERIES_IDLE_SECONDS,
        max_series: int = MAX_SERIES,
    ) -> None:
        self._clock = clock
        self._idle = int(idle_seconds * 1e9)
        self._max_series = max_series
        self._totals: OrderedDict[SeriesId, _Total] = OrderedDict()

    @property
    def series(self) -> int:
        return len(self._totals)

    def _total(self, sid: SeriesId, now: int, bounds: tuple[float, ...] = ()) -> _Total:
        total = self._totals.get(sid)
        if total is None or total.bounds != bounds:
            total = _Total(now, now, bounds=bounds, counts=[0] * (len(bounds) + 1) if bounds
                           else [])
            self._totals[sid] = total
        else:
            total.updated = now
            self._totals.move_to_end(sid)
        return total

    def _expire(self, now: int) -> None:
        totals = self._totals
        while totals:
            sid, total = next(iter(totals.items()))
            if total.updated >= now - self._idle and len(totals) <= self._max_series:
                return
            del totals[sid]

    def convert(self, metrics: MetricsDigest) -> bytes:
        """The digest as a serialized ExportMetricsServiceRequest."""
        now = self._clock()
        self._expire(now)  # idle series, before this request's are updated
        keys = metrics.series()
        values = metrics.numbers()
        resources: _Resources = {}
        parsed: dict[bytes, tuple[str, str, dict[str, str]]] = {}
        start = 0
        for run_index, run in enumerate(metrics.runs):
            kind = run.type
            bounds = bucket_bounds(run.buckets) if kind == "histogram" else ()
            for key, value in zip(keys[start:start + run.count],
                                  values[start:start + run.count], strict=True):
                labels = parsed.get(key)
                if labels is None:
                    labels = parsed[key] = series_key(key)
                service, instance, point_labels = labels
                points = resources.setdefault((service, instance), {}).setdefault(run_index, {})
                point = points.get(key)
                if point is None:
                    total = (_Total(now, now) if kind == "gauge"
                             else self._total((run.name, kind, key), now, bounds))
                    point = points[key] = _Point(point_labels, total)
                total = point.total
                if kind == "gauge":
                    point.value = value
                elif kind == "counter":
                    total.value += value
                else:
                    total.value += value
                    total.count += 1
                    total.counts[bisect_left(total.bounds, value)] += 1
            start += run.count
        self._expire(now)  # past the cap, after
        return self._request(resources, metrics, now).SerializeToString()

    def _request(
        self,
        resources: _Resources,
        metrics: MetricsDigest,
        now: int,
    ) -> ExportMetricsServiceRequest:
        request = ExportMetricsServiceRequest()
        for (service, instance), families in resources.items():
            resource_metrics: ResourceMetrics = request.resource_metrics.add()
            resource = {"service.name": service}
            if instance:
                resource["service.instance.id"] = instance
            _attributes(resource_metrics.resource.attributes, resource)
            scope_metrics: ScopeMetrics = resource_metrics.scope_metrics.add()
            scope_metrics.scope.name = SCOPE
            for run_index, points in families.items():
                run = metrics.runs[run_index]
                kind = run.type
                metric: Metric = scope_metrics.metrics.add(
                    name=run.name, unit=run.unit, description=run.description
                )
                if kind == "gauge":
                    for point in points.values():
                        data = metric.gauge.data_points.add(time_unix_nano=now,
                                                            as_double=point.value)
                        _attributes(data.attributes, point.labels)
                elif kind == "counter":
                    metric.sum.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
                    metric.sum.is_monotonic = True
                    for point in points.values():
                        total = point.total
                        data = metric.sum.data_points.add(
                            start_time_unix_nano=total.start, time_unix_nano=now,
                            as_double=total.value,
                        )
                        _attributes(data.attributes, point.labels)
                else:
                    histogram = metric.histogram
                    histogram.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
                    for point in points.values():
                        total = point.total
                        bucketed = histogram.data_points.add(
                            start_time_unix_nano=total.start, time_unix_nano=now,
                            count=total.count, sum=total.value,
                            explicit_bounds=total.bounds, bucket_counts=total.counts,
                        )
                        _attributes(bucketed.attributes, point.labels)
        return request
