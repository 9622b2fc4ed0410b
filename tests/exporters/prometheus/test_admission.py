"""What the store would refuse is refused before the answer, and `/metrics` stays valid.

Against the daemon as a process, from one process and through ingest workers: names with
no Prometheus form, reserved names, names two families would expose, type conflicts (also
between concurrent requests), label collisions, `le`/`quantile` attributes, the bucket
and label limits, negative delta counters, series limits. After each attack `/metrics` is
200 and passes `promtool check metrics` with no series twice, nothing answered 2xx is
missing, and nothing was dropped after the answer.
"""

from __future__ import annotations

import concurrent.futures
import math
import time

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from helpers.exposition import exposition_problems, sample, total
from helpers.procs import Daemon, poll

PROTOBUF = {"Content-Type": "application/x-protobuf"}
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


@pytest.fixture(scope="module", params=[0, 2], ids=["one-process", "2-workers"])
def daemon(tmp_path_factory, request):
    process = Daemon(tmp_path_factory.mktemp("admission"), config_overrides={
        "server": {"workers": request.param},
        "exporters": {"prometheus": {"max_series_per_metric": 5}},
        "limits": {"max_labels_per_metric": 4, "max_label_value_length": 64,
                   "max_buckets_per_histogram": 10},
    })
    process.start()
    yield process
    process.stop()


def scrape(daemon: Daemon) -> str:
    answer = httpx.get(f"{daemon.url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text[:2000]
    return answer.text


def assert_valid(daemon: Daemon) -> str:
    """/metrics is 200 and valid; nothing was dropped after an answer."""
    text = scrape(daemon)
    assert exposition_problems(text) == []
    dropped = total(text, "flext_collector_dropped_items_total", exporter="prometheus")
    assert dropped == 0, [line for line in text.splitlines() if "dropped_items" in line]
    return text


def refused(daemon: Daemon, reason: str) -> float:
    return total(scrape(daemon), "flext_collector_refused_items_total", signal="metrics",
                 reason=reason)


def wait_refused(daemon: Daemon, reason: str, expected: float) -> None:
    """Workers send their counts to the collector process every so often: wait for them."""
    poll(lambda: refused(daemon, reason), lambda count: count == expected, 10, 0.05,
         f"refused {reason} == {expected}")


def native(daemon: Daemon, items) -> httpx.Response:
    return httpx.post(f"{daemon.url}/api/v1/metrics", json=items, timeout=10)


def item(name, kind="gauge", value=1.0, service="adm", **fields):
    return {"name": name, "type": kind, "value": value, "service": service, **fields}


def otlp(daemon: Daemon, request: ExportMetricsServiceRequest):
    answer = httpx.post(f"{daemon.url}/v1/metrics", content=request.SerializeToString(),
                        headers=PROTOBUF, timeout=10)
    assert answer.status_code == 200, answer.text
    return ExportMetricsServiceResponse.FromString(answer.content).partial_success


def attribute(key, value) -> KeyValue:
    if isinstance(value, list):
        return KeyValue(key=key, value=AnyValue(array_value={
            "values": [AnyValue(string_value=v) for v in value]}))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def otlp_request(service="otlp-adm", resource=(), scope="", scope_version="", scoped=()):
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.append(attribute("service.name", service))
    resource_metrics.resource.attributes.extend(attribute(k, v) for k, v in resource)
    scope_metrics = resource_metrics.scope_metrics.add()
    scope_metrics.scope.name = scope
    scope_metrics.scope.version = scope_version
    scope_metrics.scope.attributes.extend(attribute(k, v) for k, v in scoped)
    return request, scope_metrics


def gauge(scope_metrics, name, value=1.0, attributes=(), unit=""):
    metric = scope_metrics.metrics.add(name=name, unit=unit)
    point = metric.gauge.data_points.add(as_double=value, time_unix_nano=time.time_ns())
    point.attributes.extend(attribute(k, v) for k, v in attributes)
    return metric


def wait_for(daemon: Daemon, name: str, **labels: str) -> str:
    return poll(lambda: scrape(daemon), lambda text: sample(text, name, **labels) is not None,
                10, 0.05, f"{name} {labels} on /metrics")


# --- names without a Prometheus form (1) ----------------------------------------------------


@pytest.mark.parametrize("bad", ["!!!", "日本語", "_", "...", "-/-", "n" * 256])
def test_otlp_names_without_a_prometheus_form_are_rejected_in_the_partial_success(daemon, bad):
    request, scope = otlp_request()
    gauge(scope, bad)
    gauge(scope, "named_ok", 2.0)
    before = refused(daemon, "invalid")
    partial = otlp(daemon, request)
    assert partial.rejected_data_points == 1
    assert "metrics[0].name" in partial.error_message
    wait_refused(daemon, "invalid", before + 1)
    wait_for(daemon, "named_ok", job="otlp-adm")
    assert_valid(daemon)


# --- reserved names (2) ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), [
    ("target_info", "counter"), ("target_info", "gauge"), ("target.info", "gauge"),
    ("flext_collector_received_items", "counter"), ("flext_collector", "counter"),
    ("flext_service_health_status", "gauge"), ("flext_service_health", "histogram"),
])
def test_reserved_names_are_refused_natively_and_over_otlp(daemon, name, kind):
    answer = native(daemon, [item("reserved_neighbour", value=3), item(name, kind)])
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["errors"]
    assert (error["index"], error["field"]) == (1, "name")
    assert "reserves" in error["message"]
    request, scope = otlp_request(resource=[("host.name", "h1")])
    otlp_metric(scope, name, kind)
    gauge(scope, "reserved_otlp_neighbour", 4.0)
    partial = otlp(daemon, request)
    assert partial.rejected_data_points == 1, partial
    assert "reserves" in partial.error_message
    text = wait_for(daemon, "reserved_otlp_neighbour", job="otlp-adm")
    assert sample(text, "target_info", job="otlp-adm", host_name="h1") == 1.0
    assert sample(text, "reserved_neighbour") is None  # its request was refused whole
    assert_valid(daemon)


# --- names two families would expose; type conflicts (2, 7) -------------------------------


@pytest.mark.parametrize(("first", "second"), [
    (("clash", "counter"), ("clash_total", "gauge")),
    (("clash2_total", "gauge"), ("clash2", "counter")),
    (("hist", "histogram"), ("hist_bucket", "gauge")),
    (("hist2_count", "gauge"), ("hist2", "histogram")),
    (("hist3", "histogram"), ("hist3_sum", "counter")),
    (("conflict", "gauge"), ("conflict", "counter")),
    (("conflict2", "histogram"), ("conflict2", "gauge")),
])
def test_a_second_family_exposing_a_taken_name_is_refused(daemon, first, second):
    (name1, kind1), (name2, kind2) = first, second
    assert native(daemon, item(name1, kind1)).status_code == 202
    answer = native(daemon, item(name2, kind2))
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "type"
    # The same pair in one request: refused whole.
    answer = native(daemon, [item("one_" + name1, kind1), item("one_" + name2, kind2)])
    assert answer.status_code == 422, answer.text
    # Over OTLP, after the native one.
    request, scope = otlp_request()
    otlp_metric(scope, name2, kind2)
    partial = otlp(daemon, request)
    assert partial.rejected_data_points == 1, (first, second, partial)
    text = assert_valid(daemon)
    exposed = {"counter": "_total", "histogram": "_bucket", "gauge": ""}[kind1]
    assert any(line.startswith(name1 + exposed) for line in text.splitlines())
    assert sample(text, "one_" + name1 + exposed) is None


def otlp_metric(scope_metrics, name, kind, value=1.0):
    """A metric that becomes family `name` (a counter: `name`_total) of `kind`."""
    metric = scope_metrics.metrics.add(name=name)
    if kind == "counter":
        metric.sum.is_monotonic = True
        metric.sum.aggregation_temporality = CUMULATIVE
        metric.sum.data_points.add(as_double=value, time_unix_nano=time.time_ns())
    elif kind == "histogram":
        metric.histogram.aggregation_temporality = CUMULATIVE
        metric.histogram.data_points.add(count=1, sum=value, bucket_counts=[1, 0],
                                         explicit_bounds=[10.0],
                                         time_unix_nano=time.time_ns())
    else:
        metric.gauge.data_points.add(as_double=value, time_unix_nano=time.time_ns())
    return metric


def test_otlp_sums_and_gauges_that_would_share_a_name_are_refused(daemon):
    request, scope = otlp_request()
    counter = scope.metrics.add(name="requests_served")
    counter.sum.is_monotonic = True
    counter.sum.aggregation_temporality = CUMULATIVE
    counter.sum.data_points.add(as_double=5, time_unix_nano=time.time_ns())
    gauge(scope, "requests_served_total", 1.0)  # the counter's sample name
    partial = otlp(daemon, request)
    assert partial.rejected_data_points == 1
    assert "requests_served_total" in partial.error_message
    text = wait_for(daemon, "requests_served_total", job="otlp-adm")
    assert sample(text, "requests_served_total", job="otlp-adm") == 5.0
    assert_valid(daemon)


def test_concurrent_requests_for_one_name_as_two_kinds_are_decided_before_the_answer(daemon):
    def send(i: int) -> tuple[str, int]:
        kind = "counter" if i % 2 else "gauge"
        return kind, native(daemon, item("raced", kind, value=1)).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(64)))
    accepted = [kind for kind, status in answers if status == 202]
    assert {status for _, status in answers} <= {202, 422}
    assert accepted, answers
    assert len(set(accepted)) == 1, answers  # one kind won, the other was refused
    kind = accepted[0]
    name = "raced_total" if kind == "counter" else "raced"
    expected = float(len(accepted)) if kind == "counter" else 1.0
    poll(lambda: sample(scrape(daemon), name, job="adm"), lambda v: v == expected, 10, 0.05,
         "every accepted increment applied")
    assert_valid(daemon)


# --- labels (7) -----------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [
    {"x.y": "a", "x_y": "b"}, {"a.b.c": "1", "a_b_c": "2"}, {"k.": "1", "k_": "2"},
])
def test_native_labels_that_are_one_prometheus_label_are_refused(daemon, labels):
    answer = native(daemon, item("collided", labels=labels))
    assert answer.status_code == 422, answer.text
    error = answer.json()["errors"][0]
    assert error["field"].startswith("labels.")
    assert "both the label" in error["message"]
    assert native(daemon, item("collided", labels={"x.y": "a"})).status_code == 202
    wait_for(daemon, "collided", x_y="a")
    assert_valid(daemon)


def test_otlp_attributes_that_are_one_label_are_merged_in_key_order(daemon):
    request, scope = otlp_request()
    gauge(scope, "merged_labels", 1.0, [("x_y", "b"), ("x.y", "a"), ("x-y", "c")])
    assert otlp(daemon, request).rejected_data_points == 0
    text = wait_for(daemon, "merged_labels", job="otlp-adm")
    # Sorted by the original key: "x-y" < "x.y" < "x_y".
    assert sample(text, "merged_labels", x_y="c;a;b") == 1.0
    assert_valid(daemon)


def test_otlp_le_and_quantile_attributes_are_rejected_on_histograms_and_summaries(daemon):
    request, scope = otlp_request()
    histogram = scope.metrics.add(name="latency_le")
    histogram.histogram.aggregation_temporality = CUMULATIVE
    for le in ("0.5", "1"):
        point = histogram.histogram.data_points.add(
            count=1, sum=0.2, bucket_counts=[1, 0], explicit_bounds=[1.0],
            time_unix_nano=time.time_ns())
        point.attributes.append(attribute("le", le))
    summary = scope.metrics.add(name="latency_quantile")
    point = summary.summary.data_points.add(count=1, sum=1, time_unix_nano=time.time_ns())
    point.quantile_values.add(quantile=0.5, value=1)
    point.attributes.append(attribute("quantile", "x"))
    fine = scope.metrics.add(name="latency_fine")
    fine.histogram.aggregation_temporality = CUMULATIVE
    fine.histogram.data_points.add(count=1, sum=0.2, bucket_counts=[1, 0],
                                   explicit_bounds=[1.0], time_unix_nano=time.time_ns()
                                   ).attributes.append(attribute("path", "/"))
    partial = otlp(daemon, request)
    assert partial.rejected_data_points == 3
    assert "'le'" in partial.error_message
    assert "'quantile'" in partial.error_message
    wait_for(daemon, "latency_fine_bucket", job="otlp-adm")
    assert_valid(daemon)


# --- histogram buckets (10) -----------------------------------------------------------------


def test_histograms_past_max_buckets_per_histogram_are_refused(daemon):
    before = refused(daemon, "bucket_limit")
    answer = native(daemon, item("wide", "histogram", 0.5, buckets=list(range(1, 12))))
    assert answer.status_code == 422
    error = answer.json()["errors"][0]
    assert error["field"] == "buckets"
    assert "limits.max_buckets_per_histogram=10" in error["message"]
    assert native(daemon, item("wide", "histogram", 0.5,
                               buckets=list(range(1, 11)))).status_code == 202
    request, scope = otlp_request()
    metric = scope.metrics.add(name="otlp_wide")
    metric.histogram.aggregation_temporality = CUMULATIVE
    for bounds in (100_000, 11, 10):
        metric.histogram.data_points.add(
            count=0, explicit_bounds=[float(b) for b in range(bounds)],
            bucket_counts=[0] * (bounds + 1), time_unix_nano=time.time_ns(),
        ).attributes.append(attribute("bounds", str(bounds)))
    partial = otlp(daemon, request)
    assert partial.rejected_data_points == 2
    assert "limits.max_buckets_per_histogram=10" in partial.error_message
    wait_refused(daemon, "bucket_limit", before + 3)
    wait_for(daemon, "otlp_wide_bucket", bounds="10")
    assert_valid(daemon)


# --- OTLP label limits on what becomes a label (12) ------------------------------------------


@pytest.mark.parametrize(("case", "words"), [
    ("resource_attributes", "labels of target_info"),
    ("service_name", "'service.name' is longer"),
    ("instance", "'service.instance.id' is longer"),
    ("resource_array", "'host.ips' is longer"),
    ("scope_name", "scope.name: is longer"),
    ("scope_version", "scope.version: is longer"),
    ("scope_attribute", "scope.attributes[0].value: the value of 'tier' is longer"),
    ("scope_attributes", "scope.attributes: 5 attributes are more than"),
    ("scope_and_point", "2 attributes and 3 scope attributes are more than"),
    ("point_array", "'tags' is longer"),
    ("point_key", "key: is longer than 200"),
])
def test_otlp_label_limits_cover_resources_scopes_names_and_arrays(daemon, case, words):
    long = "v" * 65
    resource, service, scope_name, scope_version, attributes = [], "otlp-lim", "", "", []
    scoped = []
    if case == "resource_attributes":
        resource = [(f"attr{i}", "x") for i in range(5)]
    elif case == "service_name":
        service = long
    elif case == "instance":
        resource = [("service.instance.id", long)]
    elif case == "resource_array":
        resource = [("host.ips", ["10.0.0.1"] * 8)]
    elif case == "scope_name":
        scope_name = long
    elif case == "scope_version":
        scope_version = long
    elif case == "scope_attribute":
        scoped = [("tier", long)]
    elif case == "scope_attributes":
        scoped = [(f"s{i}", "x") for i in range(5)]
    elif case == "scope_and_point":
        scoped, attributes = [("s0", "x"), ("s1", "x"), ("s2", "x")], [("a", "y"), ("b", "y")]
    elif case == "point_array":
        attributes = [("tags", ["abcdefgh"] * 8)]  # each member short, the label 88 long
    else:
        attributes = [("k" * 201, "v")]
    request, scope = otlp_request(service, resource, scope_name, scope_version, scoped)
    gauge(scope, "limited_labels", 1.0, attributes)
    before = refused(daemon, "label_limit")
    partial = otlp(daemon, request)
    assert partial.rejected_data_points == 1
    assert words in partial.error_message, partial.error_message
    assert "limits.max_label" in partial.error_message or "200" in partial.error_message
    wait_refused(daemon, "label_limit", before + 1)
    assert sample(assert_valid(daemon), "limited_labels") is None


def test_otlp_within_the_label_limits_is_kept(daemon):
    request, scope = otlp_request(
        "otlp-fits", [(f"attr{i}", "x") for i in range(4)], "s" * 64, "1.0")
    gauge(scope, "fits_labels", 1.0, [("tags", ["ab", "cd"])])
    assert otlp(daemon, request).rejected_data_points == 0
    text = wait_for(daemon, "fits_labels", job="otlp-fits")
    assert sample(text, "fits_labels", tags='[\\"ab\\",\\"cd\\"]') == 1.0
    assert sample(text, "target_info", job="otlp-fits", attr3="x") == 1.0
    assert_valid(daemon)


def test_otlp_scope_attributes_are_labels_under_the_point_attributes_and_job(daemon):
    """otel_scope_<key>, as otelcol writes them; on a clash the point's attribute, job and
    the scope's name win. Each scope attribute value is a series of its own: held to
    max_series_per_metric at the door like any label."""
    scoped = [("lib.tier", "gold"), ("shadowed", "scope"), ("name", "not-the-name")]
    request, scope = otlp_request("otlp-scoped", [("service.instance.id", "i1")],
                                  "io.lib", "2.0", scoped)
    gauge(scope, "scoped_labels", 5.0, [("otel_scope_shadowed", "point")])
    assert otlp(daemon, request).rejected_data_points == 0
    text = wait_for(daemon, "scoped_labels", job="otlp-scoped")
    [line] = [line for line in text.splitlines() if line.startswith("scoped_labels{")]
    assert line == (
        'scoped_labels{instance="i1",job="otlp-scoped",otel_scope_lib_tier="gold",'
        'otel_scope_name="io.lib",otel_scope_shadowed="point",otel_scope_version="2.0"} 5.0'
    )
    before = refused(daemon, "series_limit")
    request = ExportMetricsServiceRequest()
    for i in range(7):
        one, scope = otlp_request("otlp-scoped", scoped=[("n", str(i))])
        gauge(scope, "scoped_series", float(i))
        request.resource_metrics.extend(one.resource_metrics)
    partial = otlp(daemon, request)
    assert partial.rejected_data_points == 2
    assert "max_series_per_metric=5" in partial.error_message
    wait_refused(daemon, "series_limit", before + 2)
    text = poll(lambda: scrape(daemon), lambda t: sample(t, "scoped_series", otel_scope_n="4")
                is not None, 10, 0.05, "the admitted series")
    assert sorted(sample(text, "scoped_series", otel_scope_n=str(i)) for i in range(5)) == [
        0, 1, 2, 3, 4]
    assert sample(text, "scoped_series", otel_scope_n="5") is None
    assert_valid(daemon)


# --- NaN and infinities ----------------------------------------------------------------------


def test_nan_and_infinities_of_gauges_and_cumulative_sums_are_exposed(daemon):
    request, scope = otlp_request("otlp-nan")
    for name, value in (("nan_gauge", math.nan), ("inf_gauge", math.inf),
                        ("minus_inf_gauge", -math.inf)):
        gauge(scope, name, value)
    otlp_metric(scope, "nan_counter", "counter", math.nan)
    for monotonic in (True, False):
        metric = scope.metrics.add(name=f"inf_delta_{monotonic}")
        metric.sum.is_monotonic = monotonic
        metric.sum.aggregation_temporality = DELTA
        metric.sum.data_points.add(as_double=math.inf, time_unix_nano=time.time_ns())
    before = refused(daemon, "invalid")
    partial = otlp(daemon, request)
    assert partial.rejected_data_points == 2
    assert partial.error_message.count("a point of a delta sum must be a finite number") == 2
    wait_refused(daemon, "invalid", before + 2)
    text = wait_for(daemon, "nan_counter_total", job="otlp-nan")
    assert math.isnan(sample(text, "nan_counter_total", job="otlp-nan"))
    assert math.isnan(sample(text, "nan_gauge", job="otlp-nan"))
    assert sample(text, "inf_gauge", job="otlp-nan") == math.inf
    assert sample(text, "minus_inf_gauge", job="otlp-nan") == -math.inf
    assert sample(text, "inf_delta_True_total") is None
    assert sample(text, "inf_delta_False") is None
    assert_valid(daemon)


# --- negative delta counters (14) -----------------------------------------------------------


def test_negative_points_of_a_delta_monotonic_sum_are_rejected(daemon):
    def send(value: float, as_int: bool = False):
        request, scope = otlp_request()
        metric = scope.metrics.add(name="deltas")
        metric.sum.is_monotonic = True
        metric.sum.aggregation_temporality = DELTA
        point = metric.sum.data_points.add(time_unix_nano=time.time_ns())
        if as_int:
            point.as_int = int(value)
        else:
            point.as_double = value
        return otlp(daemon, request)

    assert send(10).rejected_data_points == 0
    for value, as_int in ((-7, False), (-1, True), (-0.5, False)):
        partial = send(value, as_int)
        assert partial.rejected_data_points == 1
        assert "must not be negative" in partial.error_message
    assert send(2, True).rejected_data_points == 0
    poll(lambda: sample(scrape(daemon), "deltas_total", job="otlp-adm"), lambda v: v == 12.0,
         10, 0.05, "10 + 2")
    assert_valid(daemon)


# --- series limits at the door (15) ---------------------------------------------------------


def test_otlp_points_past_max_series_per_metric_are_rejected_in_the_partial_success(daemon):
    request, scope = otlp_request()
    metric = scope.metrics.add(name="crowded")
    for i in range(7):
        metric.gauge.data_points.add(as_double=i, time_unix_nano=time.time_ns()
                                     ).attributes.append(attribute("n", str(i)))
    before = refused(daemon, "series_limit")
    partial = otlp(daemon, request)
    assert partial.rejected_data_points == 2
    assert "max_series_per_metric=5" in partial.error_message
    wait_refused(daemon, "series_limit", before + 2)
    text = poll(lambda: scrape(daemon), lambda t: sample(t, "crowded", n="4") is not None, 10,
                0.05, "the admitted series")
    assert sorted(sample(text, "crowded", n=str(i)) for i in range(5)) == [0, 1, 2, 3, 4]
    assert sample(text, "crowded", n="5") is None
    again = otlp(daemon, request)  # the five series held take new points; two still out
    assert again.rejected_data_points == 2
    assert_valid(daemon)


def test_concurrent_new_series_are_admitted_up_to_the_limit_and_all_kept(daemon):
    def send(i: int) -> int:
        return native(daemon, item("thronged", labels={"n": str(i)})).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(40)))
    accepted = [i for i, status in enumerate(answers) if status == 202]
    assert {*answers} <= {202, 422}
    assert len(accepted) == 5, answers
    text = poll(lambda: scrape(daemon),
                lambda t: all(sample(t, "thronged", n=str(i)) == 1.0 for i in accepted), 10,
                0.05, "every accepted series")
    assert total(text, "thronged") == 5.0
    assert_valid(daemon)
