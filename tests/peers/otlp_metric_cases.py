"""OTLP metrics requests for the golden comparison with the OpenTelemetry Collector: the
fixtures (copied from the OpenTelemetry repositories, see fixtures/SOURCES.txt) and generated
cases, each a list of requests sent in order."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    DataPointFlags,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_FILES = ("proto-examples-metrics.json", "collector-pdata-metrics-request.json",
                 "collector-pdata-pmetric-metricsJSON.json")
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
START = 1_700_000_000_000_000_000
SECOND = 1_000_000_000


def fixture(name: str) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    json_format.Parse((FIXTURES / name).read_text(), request, ignore_unknown_fields=True)
    return request


def attributes(values: Mapping[str, Any]) -> list[KeyValue]:
    pairs = []
    for key, value in values.items():
        if isinstance(value, bool):
            any_value = AnyValue(bool_value=value)
        elif isinstance(value, int):
            any_value = AnyValue(int_value=value)
        elif isinstance(value, float):
            any_value = AnyValue(double_value=value)
        else:
            any_value = AnyValue(string_value=value)
        pairs.append(KeyValue(key=key, value=any_value))
    return pairs


def number(value: float, labels: Mapping[str, Any] | None = None, at: int = 1,
           since: int = 0) -> NumberDataPoint:
    """A point at START + ``at`` s covering [START + ``since`` s, that]: a delta's ``since`` is
    the previous point's ``at``."""
    point = NumberDataPoint(start_time_unix_nano=START + since * SECOND,
                            time_unix_nano=START + at * SECOND, attributes=attributes(labels or {}))
    if isinstance(value, int):
        point.as_int = value
    else:
        point.as_double = value
    return point


def stale(at: int) -> NumberDataPoint:
    """A point flagged "no recorded value" (the OTLP staleness marker), at START + ``at`` s."""
    return NumberDataPoint(start_time_unix_nano=START, time_unix_nano=START + at * SECOND,
                           flags=DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK)


def histogram_point(bounds: Sequence[float], counts: Sequence[int], total: float,
                    labels: Mapping[str, Any] | None = None, at: int = 1,
                    since: int = 0) -> HistogramDataPoint:
    return HistogramDataPoint(
        start_time_unix_nano=START + since * SECOND, time_unix_nano=START + at * SECOND,
        attributes=attributes(labels or {}), explicit_bounds=list(bounds),
        bucket_counts=list(counts), count=sum(counts), sum=total,
    )


def request(metrics: Iterable[Metric], resource: Mapping[str, Any] | None = None,
            scope: InstrumentationScope | None = None) -> ExportMetricsServiceRequest:
    resource = {"service.name": "golden", "service.instance.id": "i-1"} if resource is None \
        else resource
    return ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
        resource=Resource(attributes=attributes(resource)),
        scope_metrics=[ScopeMetrics(scope=scope or InstrumentationScope(name="golden.scope"),
                                    metrics=list(metrics))],
    )])


def sum_metric(name: str, unit: str, points: Sequence[NumberDataPoint], *, monotonic: bool,
               temporality: int = CUMULATIVE, description: str = "") -> Metric:
    return Metric(name=name, unit=unit, description=description, sum=Sum(
        data_points=list(points), aggregation_temporality=temporality, is_monotonic=monotonic))


def gauge_metric(name: str, unit: str, points: Sequence[NumberDataPoint],
                 description: str = "") -> Metric:
    return Metric(name=name, unit=unit, description=description,
                  gauge=Gauge(data_points=list(points)))


def histogram_metric(name: str, unit: str, points: Sequence[HistogramDataPoint],
                     temporality: int = CUMULATIVE, description: str = "") -> Metric:
    return Metric(name=name, unit=unit, description=description, histogram=Histogram(
        data_points=list(points), aggregation_temporality=temporality))


def generated() -> dict[str, list[ExportMetricsServiceRequest]]:
    """Each case: its requests, sent in order to both collectors."""
    return {
        "cumulative monotonic sum": [request([sum_metric(
            "golden.requests", "{request}", [number(7, {"http.method": "GET"}),
                                             number(2, {"http.method": "POST"})],
            monotonic=True, description="Requests served")])],
        "cumulative monotonic sum, a later point": [
            request([sum_metric("golden.retries", "1", [number(3)], monotonic=True)]),
            request([sum_metric("golden.retries", "1", [number(5, at=2)], monotonic=True)]),
        ],
        "delta monotonic sum, twice": [
            request([sum_metric("golden.bytes.sent", "By", [number(10, at=1)], monotonic=True,
                                temporality=DELTA)]),
            request([sum_metric("golden.bytes.sent", "By", [number(5, at=2, since=1)],
                                monotonic=True, temporality=DELTA)]),
        ],
        "cumulative non-monotonic sum": [request([sum_metric(
            "golden.queue.depth", "{item}", [number(-4)], monotonic=False,
            description="Items waiting")])],
        "delta non-monotonic sum, twice": [
            request([sum_metric("golden.balance", "1", [number(3.5, at=1)], monotonic=False,
                                temporality=DELTA)]),
            request([sum_metric("golden.balance", "1", [number(-1.0, at=2, since=1)],
                                monotonic=False, temporality=DELTA)]),
        ],
        "gauges: int, double, negative, ratio, percent": [request([
            gauge_metric("golden.memory.usage", "By", [number(1_048_576)]),
            gauge_metric("golden.temperature", "Cel", [number(-3.25, {"room": "lab"})]),
            gauge_metric("golden.cpu.utilization", "1", [number(0.75)]),
            gauge_metric("golden.disk.used", "%", [number(42.0)]),
            gauge_metric("golden.throughput", "By/s", [number(512.5)]),
            gauge_metric("golden.packets.rate", "{packet}/s", [number(9)]),
            gauge_metric("golden.latency.avg", "ms", [number(12.5)]),
        ])],
        "NaN and infinities": [request([
            gauge_metric("golden.nan.gauge", "", [number(math.nan)]),
            gauge_metric("golden.inf.gauge", "", [number(math.inf)]),
            sum_metric("golden.nan.sum", "", [number(math.nan)], monotonic=True),
        ])],
        "staleness: a point with no recorded value after a value": [
            request([gauge_metric("golden.stale.gauge", "", [number(5, at=1)]),
                     sum_metric("golden.stale.sum", "", [number(8, at=1)], monotonic=True)]),
            request([gauge_metric("golden.stale.gauge", "", [stale(at=2)]),
                     sum_metric("golden.stale.sum", "", [stale(at=2)], monotonic=True)]),
        ],
        "histogram with buckets": [request([histogram_metric(
            "golden.http.duration", "s",
            [histogram_point([0.1, 0.5, 1.0], [2, 3, 1, 1], 3.75, {"http.route": "/users"})],
            description="Request duration")])],
        "histogram without buckets": [request([histogram_metric(
            "golden.job.duration", "ms", [histogram_point([], [4], 20.0)])])],
        "delta histogram, twice": [
            request([histogram_metric("golden.rpc.duration", "s",
                                      [histogram_point([1.0], [1, 0], 0.5, at=1)],
                                      temporality=DELTA)]),
            request([histogram_metric("golden.rpc.duration", "s",
                                      [histogram_point([1.0], [1, 2], 9.5, at=2, since=1)],
                                      temporality=DELTA)]),
        ],
        "dotted, odd and colliding names": [request([
            gauge_metric("golden.weird-name/x", "", [number(1, {
                "http.request.method": "GET", "2xx.count": 4, "ünïcode": "v", "flag": True,
                "ratio": 0.5, "_private": "p"})]),
            gauge_metric("golden.reserved.label", "", [number(1, {"__reserved": "r"})]),
            gauge_metric("golden.label.collision", "", [number(1, {"a.b": "dot", "a_b": "under"})]),
            gauge_metric("golden:colon.name", "", [number(2)]),
        ])],
        "HELP text with a backslash and a newline": [request([gauge_metric(
            "golden.help.escape", "", [number(1)], description='line one\nback\\slash "q"')])],
        "resource attributes and namespace -> job, instance, target_info": [request(
            [gauge_metric("golden.resource.case", "", [number(1)])],
            resource={"service.name": "api", "service.namespace": "shop",
                      "service.instance.id": "pod-7", "host.name": "node-1",
                      "k8s.pod.name": "api-7", "deployment.environment": "prod"})],
        "no service.name": [request([gauge_metric("golden.anonymous", "", [number(1)])],
                                    resource={"host.name": "node-2"})],
        "scope name, version and attributes": [request(
            [gauge_metric("golden.scoped", "", [number(1)])],
            scope=InstrumentationScope(name="io.example.lib", version="2.1.0",
                                       attributes=attributes({"lib.tier": "gold"})))],
    }


def cases() -> dict[str, list[ExportMetricsServiceRequest]]:
    """The fixtures, one case each, then the generated cases."""
    return {**{f"fixture {name}": [fixture(name)] for name in FIXTURE_FILES}, **generated()}
