"""The client's aggregated histograms as one OTLP/HTTP metrics export request.

Each series becomes a delta histogram data point over [since, now]; the collector adds
deltas to what it holds, as it does for any OTLP sender. The OTLP messages are imported
on first use, so importing the SDK stays light.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class HistogramKey(NamedTuple):
    """A histogram series the client aggregates locally between flushes (`record_call`)."""

    name: str
    service: str
    instance: str
    labels: tuple[tuple[str, str], ...]
    bounds: tuple[float, ...]
    description: str


class HistogramSums:
    """Observations of one series since the last pass: per bucket (`le` bounds, +Inf
    last), their count and sum."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)
        self.count = 0
        self.sum = 0.0


def otlp_histograms(series: dict[HistogramKey, HistogramSums], since: int, now: int) -> bytes:
    """A serialized ExportMetricsServiceRequest: a resource per (service, instance), a metric
    per name, a data point per series; times in Unix nanoseconds."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

    request = ExportMetricsServiceRequest()
    scopes: dict[tuple[str, str], Any] = {}
    metrics: dict[tuple[tuple[str, str], str], Any] = {}
    for key, sums in series.items():
        origin = (key.service, key.instance)
        scope = scopes.get(origin)
        if scope is None:
            resource = request.resource_metrics.add()
            attributes = resource.resource.attributes
            attributes.add(key="service.name").value.string_value = key.service
            if key.instance:
                attributes.add(key="service.instance.id").value.string_value = key.instance
            scope = scopes[origin] = resource.scope_metrics.add()
        metric = metrics.get((origin, key.name))
        if metric is None:
            metric = metrics[origin, key.name] = scope.metrics.add(
                name=key.name, description=key.description
            )
            metric.histogram.aggregation_temporality = (
                AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
            )
        point = metric.histogram.data_points.add(
            start_time_unix_nano=since, time_unix_nano=now, count=sums.count, sum=sums.sum,
            bucket_counts=sums.counts, explicit_bounds=key.bounds,
        )
        for name, value in key.labels:
            point.attributes.add(key=name).value.string_value = value
    data: bytes = request.SerializeToString()
    return data
