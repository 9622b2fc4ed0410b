"""OTLP/HTTP and OTLP/gRPC against the real daemon, driven by the official OpenTelemetry SDK."""

import gzip
import sqlite3

import grpc
import httpx
import orjson
import pytest
from google.protobuf import json_format
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.trace import Status as SpanStatus

from helpers.exposition import sample
from helpers.fixtures import OTLP_FIXTURES
from helpers.otlp_json import otlp_json
from helpers.otlp_requests import traces_request
from helpers.procs import poll

FIXTURES = OTLP_FIXTURES
RESOURCE = Resource.create({"service.name": "shop", "service.instance.id": "i-1",
                            "deployment.environment": "test"})
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def queued_spans(daemon):
    """Every ResourceSpans stored in the daemon's queue, read straight from its storage."""
    with sqlite3.connect(f"file:{daemon.data_dir / 'queue.sqlite3'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT payload FROM records WHERE signal = 'spans' ORDER BY seq")
        merged = ExportTraceServiceRequest()
        for (payload,) in rows:
            merged.MergeFromString(payload)
    return merged


# Spans with no span exporter are held in the queue, not refused.
HELD = {"queue": {"hold_unexported": True}}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_sdk_span_exporter_spans_are_queued_with_every_field(daemon_factory, protocol):
    daemon = daemon_factory(HELD)
    if protocol == "grpc":
        exporter = GrpcSpanExporter(endpoint=daemon.grpc_target, insecure=True)
    else:
        exporter = HttpSpanExporter(endpoint=f"{daemon.url}/v1/traces")
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("checkout.lib", "1.2.3")
    with tracer.start_as_current_span("checkout", kind=SpanKind.SERVER) as parent:
        parent.set_attributes({"str": "v", "int": 7, "float": 1.5, "bool": True,
                               "strs": ["a", "b"], "ints": [1, 2]})
        parent.add_event("cart.loaded", {"items": 3})
        with tracer.start_as_current_span(
            "charge", kind=SpanKind.CLIENT,
            links=[Link(parent.get_span_context(), {"link.kind": "follows"})],
        ) as child:
            child.set_status(SpanStatus(StatusCode.ERROR, "card declined"))
    provider.shutdown()
    assert len(memory.get_finished_spans()) == 2

    receiver = "otlp_grpc" if protocol == "grpc" else "otlp_http"
    text = httpx.get(f"{daemon.url}/metrics").text
    assert sample(text, "flext_collector_received_items_total", signal="spans",
                  receiver=receiver) == 2
    expected = encode_spans(memory.get_finished_spans())
    stored = queued_spans(daemon)
    as_dict = json_format.MessageToDict
    stored_spans = sorted(
        (as_dict(s) for rs in stored.resource_spans for ss in rs.scope_spans for s in ss.spans),
        key=lambda s: s["name"])
    expected_spans = sorted(
        (as_dict(s) for rs in expected.resource_spans for ss in rs.scope_spans
         for s in ss.spans), key=lambda s: s["name"])
    assert stored_spans == expected_spans
    assert as_dict(stored.resource_spans[0].resource) == as_dict(
        expected.resource_spans[0].resource)
    assert as_dict(stored.resource_spans[0].scope_spans[0].scope) == as_dict(
        expected.resource_spans[0].scope_spans[0].scope)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_sdk_metrics_reach_prometheus_translated(daemon_factory, prometheus_factory, protocol):
    daemon = daemon_factory()
    prometheus = prometheus_factory([daemon.url])
    if protocol == "grpc":
        exporter = GrpcMetricExporter(endpoint=daemon.grpc_target, insecure=True)
    else:
        exporter = HttpMetricExporter(endpoint=f"{daemon.url}/v1/metrics")
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("shop.meter")
    requests = meter.create_counter("app.requests", unit="{request}")
    queue = meter.create_up_down_counter("app.queue.size")
    latency = meter.create_histogram("app.latency", unit="s")

    def temperature(_: CallbackOptions):
        yield Observation(21.5, {"room": "a"})

    meter.create_observable_gauge("app.temperature", [temperature], unit="Cel")
    requests.add(3, {"route": "/buy"})
    requests.add(4, {"route": "/buy"})
    queue.add(5)
    queue.add(-2)
    latency.record(0.2)
    latency.record(0.7)
    provider.force_flush()
    requests.add(1, {"route": "/buy"})
    provider.shutdown()

    sel = 'job="shop",instance="i-1"'
    counter = prometheus.wait_for(f'app_requests_total{{{sel},route="/buy"}}',
                                  lambda r: r and float(r[0]["value"][1]) == 8)
    assert counter[0]["metric"]["otel_scope_name"] == "shop.meter"
    assert float(prometheus.wait_for(f"app_queue_size{{{sel}}}")[0]["value"][1]) == 3
    assert float(prometheus.wait_for(f"app_latency_seconds_count{{{sel}}}")[0]["value"][1]) == 2
    assert float(prometheus.query(f"app_latency_seconds_sum{{{sel}}}")[0]["value"][1]) == (
        pytest.approx(0.9))
    le = prometheus.query(f'app_latency_seconds_bucket{{{sel},le="+Inf"}}')
    assert float(le[0]["value"][1]) == 2
    gauge = prometheus.wait_for(f'app_temperature_celsius{{{sel},room="a"}}')
    assert float(gauge[0]["value"][1]) == 21.5
    info = prometheus.wait_for(f"target_info{{{sel}}}")
    assert info[0]["metric"]["deployment_environment"] == "test"


def _delta_sum(value, time_ns):
    return {"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "d"}}]},
        "scopeMetrics": [{"metrics": [{"name": "jobs", "sum": {
            "aggregationTemporality": 1, "isMonotonic": True,
            "dataPoints": [{"asInt": str(value), "timeUnixNano": str(time_ns)}]}}]}]}]}


def test_delta_sums_accumulate_and_out_of_order_points_are_ignored(daemon_factory):
    daemon = daemon_factory()
    for value, time_ns in ((2, 2_000), (3, 3_000), (100, 1_000)):
        answer = httpx.post(f"{daemon.url}/v1/metrics", json=_delta_sum(value, time_ns))
        assert answer.status_code == 200
    text = poll(lambda: httpx.get(f"{daemon.url}/metrics").text,
                lambda t: sample(t, "flext_collector_dropped_items_total",
                                 exporter="prometheus", reason="out_of_order") == 1,
                10, 0.05, "out-of-order point dropped")
    assert sample(text, "jobs_total", job="d") == 5


def fixture_files():
    for path in sorted(FIXTURES.glob("*.json")):
        yield pytest.param(path, "json", id=path.name)
    for path in sorted((FIXTURES / "pb").glob("*.pb")):
        yield pytest.param(path, "http", id=f"http-{path.name}")
        yield pytest.param(path, "grpc", id=f"grpc-{path.name}")


def signal_of(path):
    if path.suffix == ".json":
        top = orjson.loads(path.read_bytes())
        return next(s for k, s in (("resourceSpans", "traces"), ("resourceMetrics", "metrics"),
                                   ("resourceLogs", "logs")) if k in top)
    name = path.name
    return "traces" if "trace" in name else "metrics" if "metric" in name else "logs"


GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
RESPONSES = {"traces": ExportTraceServiceResponse, "metrics": ExportMetricsServiceResponse,
             "logs": ExportLogsServiceResponse}


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory):
    from helpers.procs import Daemon

    daemon = Daemon(tmp_path_factory.mktemp("otlp"), config_overrides=HELD).start()
    yield daemon
    daemon.stop()


@pytest.mark.parametrize(("path", "transport"), list(fixture_files()))
def test_every_fixture_is_accepted(shared_daemon, path, transport):
    signal = signal_of(path)
    body = path.read_bytes()
    if transport == "grpc":
        with grpc.insecure_channel(shared_daemon.grpc_target) as channel:
            raw = channel.unary_unary(GRPC_METHODS[signal])(body, timeout=10)
        response = json_format.MessageToDict(RESPONSES[signal].FromString(raw))
    else:
        ctype = "application/json" if transport == "json" else "application/x-protobuf"
        answer = httpx.post(f"{shared_daemon.url}/v1/{signal}", content=body,
                            headers={"Content-Type": ctype, "Accept": ctype}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == ctype
        response = (answer.json() if transport == "json" else
                    json_format.MessageToDict(RESPONSES[signal].FromString(answer.content)))
    partial = response.get("partialSuccess", {})
    if signal == "logs":
        assert "no logs exporter" in partial.get("errorMessage", "")
    else:
        assert not any(k.startswith("rejected") for k in partial), partial


GOOD = bytes(range(1, 17))


def test_partial_success_counts_the_rejected(shared_daemon):
    body = traces_request(GOOD, bytes(16), GOOD).SerializeToString()
    answer = httpx.post(f"{shared_daemon.url}/v1/traces", content=body, headers=PROTOBUF)
    assert answer.status_code == 200
    response = ExportTraceServiceResponse.FromString(answer.content)
    assert response.partial_success.rejected_spans == 1
    assert "traceId" in response.partial_success.error_message
    json_answer = httpx.post(f"{shared_daemon.url}/v1/traces",
                             content=otlp_json(traces_request(GOOD, bytes(16))),
                             headers={"Content-Type": "application/json"})
    assert json_answer.json()["partialSuccess"]["rejectedSpans"] in (1, "1")


@pytest.mark.parametrize(("method", "path", "headers", "body", "status", "words"), [
    ("GET", "/v1/traces", {}, b"", 405, ""),
    ("PUT", "/v1/metrics", PROTOBUF, b"", 405, ""),
    ("POST", "/v1/traces", {"Content-Type": "text/plain"}, b"x", 415, "Content-Type"),
    ("POST", "/v1/traces", {}, b"x", 415, "Content-Type"),
    ("POST", "/v1/traces", PROTOBUF, b"\xff\xff\xff", 400, "protobuf"),
    ("POST", "/v1/traces", {"Content-Type": "application/json"}, b"{nope", 400, "JSON"),
    ("POST", "/v1/logs", {"Content-Type": "application/json"}, b"[]", 400, "object"),
    ("POST", "/v1/traces", {**PROTOBUF, "Content-Encoding": "br"}, b"x", 415, "br"),
    ("POST", "/v1/traces", {**PROTOBUF, "Content-Encoding": "gzip"}, b"notgzip", 400, "gzip"),
])
def test_protocol_errors(shared_daemon, method, path, headers, body, status, words):
    answer = httpx.request(method, f"{shared_daemon.url}{path}", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    if status in (400, 415):
        if answer.headers["content-type"] == "application/json":
            message = answer.json()["message"]
        else:
            message = Status.FromString(answer.content).message
        assert words.lower() in message.lower()
    assert httpx.get(f"{shared_daemon.url}/healthz").status_code == 200


@pytest.mark.parametrize("ctype", ["Application/JSON; charset=utf-8", "application/json",
                                   "APPLICATION/X-PROTOBUF", "application/x-protobuf; proto=x"])
def test_content_types_match_case_insensitively_with_parameters(shared_daemon, ctype):
    request = traces_request(GOOD)
    body = otlp_json(request) if "json" in ctype.lower() else request.SerializeToString()
    answer = httpx.post(f"{shared_daemon.url}/v1/traces", content=body,
                        headers={"Content-Type": ctype})
    assert answer.status_code == 200, answer.text


def test_gzip_bodies_empty_requests_and_bombs(shared_daemon):
    body = gzip.compress(traces_request(GOOD).SerializeToString())
    answer = httpx.post(f"{shared_daemon.url}/v1/traces", content=body,
                        headers={**PROTOBUF, "Content-Encoding": "gzip"})
    assert answer.status_code == 200
    assert not ExportTraceServiceResponse.FromString(answer.content).HasField("partial_success")
    for kind in ("traces", "metrics", "logs"):
        empty = httpx.post(f"{shared_daemon.url}/v1/{kind}", content=b"", headers=PROTOBUF)
        assert empty.status_code == 200
        assert httpx.post(f"{shared_daemon.url}/v1/{kind}", json={}).status_code == 200
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)
    answer = httpx.post(f"{shared_daemon.url}/v1/traces", content=bomb,
                        headers={**PROTOBUF, "Content-Encoding": "gzip"}, timeout=30)
    assert answer.status_code == 413
    assert "after decompression" in Status.FromString(answer.content).message
    text = httpx.get(f"{shared_daemon.url}/metrics").text
    assert sample(text, "process_resident_memory_bytes") < 300 * 1024 * 1024


def test_grpc_decode_error_is_invalid_argument(shared_daemon):
    with grpc.insecure_channel(shared_daemon.grpc_target) as channel, pytest.raises(
        grpc.RpcError
    ) as failed:
        channel.unary_unary(GRPC_METHODS["traces"])(b"\xff\xff\xff", timeout=10)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_message_size_limit_is_configurable(daemon_factory):
    daemon = daemon_factory({"server": {"grpc_max_message_bytes": 1024}})
    big = traces_request(*([GOOD] * 50))
    big.resource_spans[0].scope_spans[0].spans[0].name = "x" * 2000
    with grpc.insecure_channel(daemon.grpc_target) as channel, pytest.raises(
        grpc.RpcError
    ) as failed:
        channel.unary_unary(GRPC_METHODS["traces"])(big.SerializeToString(), timeout=10)
    assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "server.grpc_max_message_bytes=1024" in failed.value.details()
    assert sample(httpx.get(f"{daemon.url}/metrics").text, "flext_collector_refused_items_total",
                  signal="spans", reason="too_large") == 1


def test_full_queue_throttles_http_and_grpc_and_the_sdk_retries(daemon_factory):
    daemon = daemon_factory(
        {"queue": {"max_items": 3, "retry_after_seconds": 1, "signal_share": 1,
                   "hold_unexported": True}})
    body = traces_request(GOOD, GOOD, GOOD).SerializeToString()
    assert httpx.post(f"{daemon.url}/v1/traces", content=body, headers=PROTOBUF).status_code == (
        200)
    throttled = httpx.post(f"{daemon.url}/v1/traces", content=body, headers=PROTOBUF)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "1"
    assert "queue.max_items" in Status.FromString(throttled.content).message
    with grpc.insecure_channel(daemon.grpc_target) as channel, pytest.raises(
        grpc.RpcError
    ) as failed:
        channel.unary_unary(GRPC_METHODS["traces"])(body, timeout=10)
    assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = dict(failed.value.trailing_metadata())["grpc-status-details-bin"]
    retry = RetryInfo()
    Status.FromString(details).details[0].Unpack(retry)
    assert retry.retry_delay.seconds == 1

    refused_before = sample(httpx.get(f"{daemon.url}/metrics").text,
                            "flext_collector_refused_items_total", signal="spans",
                            reason="queue_full")
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("t").start_span("late").end()
    exporter = HttpSpanExporter(endpoint=f"{daemon.url}/v1/traces", timeout=4)
    assert exporter.export(memory.get_finished_spans()) == SpanExportResult.FAILURE
    refused_after = sample(httpx.get(f"{daemon.url}/metrics").text,
                           "flext_collector_refused_items_total", signal="spans",
                           reason="queue_full")
    assert refused_after - refused_before >= 2, "the SDK exporter retried after the 429"


def test_metrics_json_fixture_values_reach_the_exposition(shared_daemon):
    body = (FIXTURES / "proto-examples-metrics.json").read_bytes()
    answer = httpx.post(f"{shared_daemon.url}/v1/metrics", content=body,
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 200
    request = ExportMetricsServiceRequest()
    json_format.Parse(body, request, ignore_unknown_fields=True)
    poll(lambda: httpx.get(f"{shared_daemon.url}/metrics").text,
         lambda t: "my_counter" in t or "my_histogram" in t, 10, 0.05, "fixture metrics")
