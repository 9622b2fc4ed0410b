"""OTLP exponential histograms on /metrics as explicit-bucket histograms, against the real daemon;
nothing dropped while the sender is told it was accepted."""

import shutil
import subprocess
import time

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    ExponentialHistogramDataPoint,
)

from helpers.exposition import sample, total
from helpers.procs import poll

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def request(temporality, **point) -> bytes:
    body = ExportMetricsServiceRequest()
    resource = body.resource_metrics.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "api"
    metric = resource.scope_metrics.add().metrics.add(name="rpc.latency", unit="s")
    metric.exponential_histogram.aggregation_temporality = temporality
    metric.exponential_histogram.data_points.add(
        time_unix_nano=time.time_ns(), **point
    ).attributes.add(key="route").value.string_value = "/x"
    return body.SerializeToString()


def post(daemon, body):
    answer = httpx.post(f"{daemon.url}/v1/metrics", content=body, headers=PROTOBUF, timeout=10)
    assert answer.status_code == 200, answer.text
    response = ExportMetricsServiceResponse.FromString(answer.content)
    assert response.partial_success.rejected_data_points == 0, response


def buckets(text):
    return {
        line.split('le="', 1)[1].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("rpc_latency_seconds_bucket{")
    }


def test_exponential_histograms_are_converted_to_explicit_buckets(daemon_factory, tmp_path):
    daemon = daemon_factory()
    # Scale 0 (base 2): zero bucket 1, (1,2] 2, (2,4] 3, (4,8] 4; one negative in [-2,-1).
    post(daemon, request(
        AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE, scale=0, count=11, sum=40.0,
        zero_count=1, positive=ExponentialHistogramDataPoint.Buckets(
            offset=0, bucket_counts=[2, 3, 4]),
        negative=ExponentialHistogramDataPoint.Buckets(offset=0, bucket_counts=[1]),
    ))
    text = poll(lambda: httpx.get(f"{daemon.url}/metrics", timeout=10).text,
                lambda t: "rpc_latency_seconds_bucket" in t, 10, 0.05, "converted histogram")
    assert buckets(text) == {"-1.0": 1, "0.0": 2, "2.0": 4, "4.0": 7, "8.0": 11, "+Inf": 11}
    assert sample(text, "rpc_latency_seconds_count", job="api", route="/x") == 11
    assert sample(text, "rpc_latency_seconds_sum", job="api", route="/x") == 40
    assert total(text, "flext_collector_dropped_items_total") == 0

    if shutil.which("promtool"):
        exposition = tmp_path / "metrics.txt"
        exposition.write_text(text)
        checked = subprocess.run(["promtool", "check", "metrics"], stdin=exposition.open(),
                                 capture_output=True, text=True, timeout=30)
        assert "error" not in (checked.stdout + checked.stderr).lower(), checked


@pytest.mark.parametrize("scale", [-10, 20])
def test_delta_points_accumulate_across_layouts_and_extreme_scales(daemon_factory, scale):
    daemon = daemon_factory()
    delta = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    post(daemon, request(delta, scale=3, count=2, sum=3.0, positive=(
        ExponentialHistogramDataPoint.Buckets(offset=0, bucket_counts=[1, 1]))))
    post(daemon, request(delta, scale=scale, count=3, sum=9.0, zero_count=1, positive=(
        ExponentialHistogramDataPoint.Buckets(offset=2, bucket_counts=[1, 1]))))
    text = poll(lambda: httpx.get(f"{daemon.url}/metrics", timeout=10).text,
                lambda t: sample(t, "rpc_latency_seconds_count", route="/x") == 5, 10, 0.05,
                "two deltas")
    assert buckets(text)["+Inf"] == 5
    assert sample(text, "rpc_latency_seconds_sum", route="/x") == 12


@pytest.mark.parametrize("scale", [-2000, -1100, 5000])
def test_scales_past_the_float_range_fold_into_the_outer_buckets(daemon_factory, scale):
    """2^(index / 2^scale) overflows for very negative scales: the bounds fold, nothing fails."""
    daemon = daemon_factory()
    post(daemon, request(AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE, scale=scale,
                         count=6, sum=1.0, zero_count=1,
                         positive=ExponentialHistogramDataPoint.Buckets(offset=-3,
                                                                        bucket_counts=[1, 2]),
                         negative=ExponentialHistogramDataPoint.Buckets(offset=-1,
                                                                        bucket_counts=[1, 1])))
    text = poll(lambda: httpx.get(f"{daemon.url}/metrics", timeout=10).text,
                lambda t: sample(t, "rpc_latency_seconds_count", route="/x") == 6, 10, 0.05,
                "the point applied")
    assert buckets(text)["+Inf"] == 6
    assert "Traceback" not in daemon.log_tail(10_000)


def test_more_buckets_than_the_limit_are_rejected_in_the_partial_success(daemon_factory):
    daemon = daemon_factory({"limits": {"max_buckets_per_histogram": 10}})
    body = request(AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE, scale=0, count=20,
                   positive=ExponentialHistogramDataPoint.Buckets(offset=0,
                                                                  bucket_counts=[1] * 20))
    answer = httpx.post(f"{daemon.url}/v1/metrics", content=body, headers=PROTOBUF, timeout=10)
    assert answer.status_code == 200, answer.text
    response = ExportMetricsServiceResponse.FromString(answer.content)
    assert response.partial_success.rejected_data_points == 1
    assert "limits.max_buckets_per_histogram=10" in response.partial_success.error_message
