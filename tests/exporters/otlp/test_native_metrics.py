"""Native metrics (the queue's digests) as cumulative OTLP (`exporters.otlp.native_metrics`)."""

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_CUMULATIVE

from flext_observability.exporters.otlp.native_metrics import NativeMetricsToOtlp
from flext_observability.models.wire import WireMetric, digest

SECOND = 10**9


class Clock:
    def __init__(self) -> None:
        self.now = 1_000 * SECOND

    def __call__(self) -> int:
        return self.now


def metric(name, kind, value, service="api", instance="", labels=None, buckets=None):
    return WireMetric(name=name, type=kind, value=value, service=service, instance=instance,
                      labels=labels or {}, buckets=buckets)


def convert(converter, *items):
    return ExportMetricsServiceRequest.FromString(converter.convert(digest(list(items))))


def points(request, name):
    found = []
    for resource_metrics in request.resource_metrics:
        resource = {kv.key: kv.value.string_value for kv in resource_metrics.resource.attributes}
        for scope_metrics in resource_metrics.scope_metrics:
            assert scope_metrics.scope.name == "flext-observability"
            for m in scope_metrics.metrics:
                if m.name == name:
                    data = getattr(m, m.WhichOneof("data"))
                    found += [(resource, {kv.key: kv.value.string_value for kv in p.attributes},
                               p) for p in data.data_points]
    return found


def test_counters_add_up_across_requests_one_point_per_series_and_request():
    clock = Clock()
    converter = NativeMetricsToOtlp(clock)
    first = convert(converter, metric("jobs", "counter", 1, labels={"k": "a"}),
                    metric("jobs", "counter", 2, labels={"k": "a"}),
                    metric("jobs", "counter", 5, labels={"k": "b"}, instance="h1"))
    [(resource_a, labels_a, a), (resource_b, labels_b, b)] = points(first, "jobs")
    assert (resource_a, labels_a, a.as_double) == ({"service.name": "api"}, {"k": "a"}, 3)
    assert (resource_b, labels_b, b.as_double) == (
        {"service.name": "api", "service.instance.id": "h1"}, {"k": "b"}, 5)
    sum_ = first.resource_metrics[0].scope_metrics[0].metrics[0].sum
    assert sum_.is_monotonic
    assert sum_.aggregation_temporality == AGGREGATION_TEMPORALITY_CUMULATIVE
    start = a.start_time_unix_nano
    clock.now += SECOND
    [(_, _, again)] = points(convert(converter, metric("jobs", "counter", 4, labels={"k": "a"})),
                             "jobs")
    assert (again.as_double, again.start_time_unix_nano, again.time_unix_nano) == (
        7, start, clock.now)


def test_gauges_keep_the_last_value_and_histograms_count_into_their_buckets():
    converter = NativeMetricsToOtlp(Clock())
    request = convert(converter, metric("depth", "gauge", 5), metric("depth", "gauge", 9),
                      metric("wait", "histogram", 1.0, buckets=[1, 5]),
                      metric("wait", "histogram", 1.5, buckets=[1, 5]),
                      metric("wait", "histogram", 50, buckets=[1, 5]),
                      metric("size", "histogram", 0.001))
    [(_, _, depth)] = points(request, "depth")
    assert depth.as_double == 9
    [(_, _, wait)] = points(request, "wait")
    assert (wait.count, wait.sum, list(wait.explicit_bounds), list(wait.bucket_counts)) == (
        3, 52.5, [1, 5], [1, 1, 1])  # a bound is inclusive, as Prometheus' `le`
    [(_, _, size)] = points(request, "size")
    assert len(size.explicit_bounds) == 14
    assert next(iter(size.bucket_counts)) == 1


def test_an_idle_series_or_one_past_the_cap_starts_again_from_zero():
    clock = Clock()
    converter = NativeMetricsToOtlp(clock, idle_seconds=60, max_series=2)
    convert(converter, metric("jobs", "counter", 3))
    clock.now += 61 * SECOND
    [(_, _, point)] = points(convert(converter, metric("jobs", "counter", 1)), "jobs")
    assert (point.as_double, point.start_time_unix_nano) == (1, clock.now)
    convert(converter, *(metric("jobs", "counter", 1, labels={"n": str(i)}) for i in range(3)))
    assert converter.series == 2
