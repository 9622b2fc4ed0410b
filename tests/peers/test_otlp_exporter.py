"""The OTLP exporter (``exporters.otlp``) into the real OpenTelemetry Collector: its OTLP
receivers write what they get to files (``helpers.otelcol_files``), read back here.

One otelcol and one collector for the module. The collector has three entries:
``via-grpc`` (OTLP/gRPC, gzip) and ``via-http`` (OTLP/HTTP, gzip), every signal, each to its
own otelcol receiver; ``no-logs`` (OTLP/HTTP, no compression, traces and logs) to a receiver
with no logs pipeline, which answers logs with 404. Spans, metrics and logs go in native,
as OTLP and through the OpenTelemetry SDK's exporters, and must come out of otelcol intact.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_CUMULATIVE
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from helpers.exposition import sample
from helpers.otelcol_files import OtelcolFiles, attributes
from helpers.peers import PeerMissing
from helpers.procs import Daemon, poll

RECEIVERS = {"grpc": "grpc", "http": "http", "traces_only": "http"}
FAST_RETRY = {"initial_interval": 0.1, "max_interval": 0.5}
PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture(scope="module")
def otelcol(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtelcolFiles]:
    try:
        process = OtelcolFiles(tmp_path_factory.mktemp("otelcol"), RECEIVERS,
                               {"traces_only": ("traces",)})
    except PeerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, otelcol: OtelcolFiles) -> Iterator[Daemon]:
    entries = [
        {"name": "via-grpc", "endpoint": otelcol.endpoints["grpc"], "retry": FAST_RETRY,
         "batch_timeout": "50ms"},
        {"name": "via-http", "endpoint": otelcol.endpoints["http"], "protocol": "http/protobuf",
         "retry": FAST_RETRY, "batch_timeout": "50ms"},
        {"name": "no-logs", "endpoint": otelcol.endpoints["traces_only"],
         "protocol": "http/protobuf", "compression": "none", "signals": ["traces", "logs"],
         "retry": FAST_RETRY, "batch_timeout": "50ms"},
    ]
    process = Daemon(Path(tmp_path_factory.mktemp("daemon")),
                     config_overrides={"exporters": {"otlp": entries}})
    process.start()
    yield process
    process.stop()


def scrape(daemon: Daemon, name: str, **labels: str) -> float:
    return sample(httpx.get(f"{daemon.url}/metrics", timeout=10).text, name, **labels) or 0.0


def native_span(tag: str, name: str, parent: str | None = None, trace_id: str | None = None):
    now = time.time_ns()
    return {
        "trace_id": trace_id or secrets.token_hex(16), "span_id": secrets.token_hex(8),
        "parent_span_id": parent, "name": name, "service": f"native-{tag}", "kind": "server",
        "start_time": now - 5_000_000, "end_time": now,
        "status": {"code": "error", "message": "boom"},
        "attributes": {"http.route": "/users", "retries": 2, "ok": True, "ratio": 0.5},
        "events": [{"name": "cache-miss", "time": now - 1_000_000,
                    "attributes": {"key": "user:1"}}],
    }


def post(daemon: Daemon, path: str, **kwargs) -> httpx.Response:
    answer = httpx.post(f"{daemon.url}{path}", timeout=10, **kwargs)
    assert answer.status_code in (200, 202), answer.text
    return answer


def otlp_logs(tag: str, count: int) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name", value=AnyValue(string_value=tag))
    scope = resource_logs.scope_logs.add()
    scope.scope.name = "tests"
    now = time.time_ns()
    for i in range(count):
        scope.log_records.add(
            time_unix_nano=now + i, observed_time_unix_nano=now + i, severity_number=9,
            severity_text="INFO", body=AnyValue(string_value=f"{tag} line {i}"),
            attributes=[KeyValue(key="n", value=AnyValue(int_value=i)),
                        KeyValue(key="tag", value=AnyValue(string_value=tag))],
            trace_id=secrets.token_bytes(16), span_id=secrets.token_bytes(8), flags=1,
        )
    return request


def otlp_metrics(tag: str) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.add(key="service.name", value=AnyValue(string_value=tag))
    scope = resource_metrics.scope_metrics.add()
    scope.scope.name = "tests"
    now = time.time_ns()
    point = {"start_time_unix_nano": now - 10**9, "time_unix_nano": now,
             "attributes": [KeyValue(key="path", value=AnyValue(string_value="/a"))]}
    gauge = scope.metrics.add(name=f"otlp.{tag}.temperature", unit="Cel")
    gauge.gauge.data_points.add(as_double=21.5, **point)
    total = scope.metrics.add(name=f"otlp.{tag}.requests", unit="1")
    total.sum.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
    total.sum.is_monotonic = True
    total.sum.data_points.add(as_int=42, **point)
    histogram = scope.metrics.add(name=f"otlp.{tag}.latency", unit="s")
    histogram.histogram.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
    histogram.histogram.data_points.add(count=3, sum=1.5, explicit_bounds=[0.1, 1.0],
                                        bucket_counts=[1, 1, 1], **point)
    return request


def native_metrics(tag: str) -> list[list[dict]]:
    """Three requests: a counter's increments (1, 2, 4), a gauge (5 then 9), a histogram
    (0.3 and 2.0 with buckets 1 and 5)."""
    base = {"service": f"native-{tag}", "instance": "host-1", "labels": {"zone": "a"}}
    counter = {**base, "name": f"native_{tag}_jobs", "type": "counter", "unit": "1",
               "description": "jobs done"}
    gauge = {**base, "name": f"native_{tag}_queue_depth", "type": "gauge"}
    histogram = {**base, "name": f"native_{tag}_wait_seconds", "type": "histogram",
                 "unit": "s", "buckets": [1, 5]}
    return [
        [{**counter, "value": 1}, {**counter, "value": 2}, {**gauge, "value": 5}],
        [{**histogram, "value": 0.3}, {**gauge, "value": 9}],
        [{**counter, "value": 4}, {**histogram, "value": 2.0}],
    ]


def point_time(metric) -> int:
    data = getattr(metric, metric.WhichOneof("data"))
    return max(point.time_unix_nano for point in data.data_points)


def check_native_metrics(otelcol: OtelcolFiles, receiver: str, tag: str) -> None:
    """The native metrics of ``native_metrics(tag)``, as the latest point of each series
    (batches may arrive out of order)."""
    last = {}
    for metric, resource in otelcol.metrics(receiver):
        if metric.name.startswith(f"native_{tag}_"):
            assert resource == {"service.name": f"native-{tag}", "service.instance.id": "host-1"}
            held = last.get(metric.name)
            if held is None or point_time(metric) > point_time(held):
                last[metric.name] = metric
    jobs = last[f"native_{tag}_jobs"]
    assert (jobs.unit, jobs.description) == ("1", "jobs done")
    assert jobs.sum.is_monotonic
    assert jobs.sum.aggregation_temporality == AGGREGATION_TEMPORALITY_CUMULATIVE
    [point] = jobs.sum.data_points
    assert (point.as_double, attributes(point.attributes)) == (7, {"zone": "a"})
    assert 0 < point.start_time_unix_nano <= point.time_unix_nano
    [point] = last[f"native_{tag}_queue_depth"].gauge.data_points
    assert point.as_double == 9
    wait = last[f"native_{tag}_wait_seconds"]
    assert (wait.unit, wait.histogram.aggregation_temporality) == (
        "s", AGGREGATION_TEMPORALITY_CUMULATIVE)
    [point] = wait.histogram.data_points
    assert (point.count, point.sum, list(point.explicit_bounds), list(point.bucket_counts)) == (
        2, 2.3, [1, 5], [1, 1, 0])


def wait_until(what: str, check, timeout: float = 20) -> None:
    """Poll ``check()`` (assertions) until it passes."""

    def attempt():
        try:
            check()
        except (AssertionError, KeyError, ValueError) as exc:
            return exc
        return None

    poll(attempt, lambda error: error is None, timeout, 0.2, what)


def test_traces_metrics_and_logs_arrive_intact_over_grpc_and_http(daemon, otelcol):
    tag = secrets.token_hex(3)
    # Native spans: a parent and its child.
    parent = native_span(tag, "parent-op")
    child = native_span(tag, "child-op", parent=parent["span_id"], trace_id=parent["trace_id"])
    post(daemon, "/api/v1/spans", json=[parent, child])
    # The SDK's spans through its OTLP/gRPC exporter, and a log inside one through its
    # OTLP/HTTP log exporter.
    recorder = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": f"sdk-{tag}"}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(recorder))
    tracer_provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=daemon.grpc_target, insecure=True, timeout=30)))
    logger_provider = LoggerProvider(resource=Resource.create({"service.name": f"sdk-{tag}"}))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(
        OTLPLogExporter(endpoint=f"{daemon.url}/v1/logs", timeout=30)))
    logger = logger_provider.get_logger("tests")
    tracer = tracer_provider.get_tracer("tests")
    with (tracer.start_as_current_span("sdk-parent", attributes={"db": "users", "n": 1}),
          tracer.start_as_current_span("sdk-child") as span):
        span.add_event("queried", {"rows": 3})
        logger.emit(body=f"sdk log {tag}", severity_number=SeverityNumber.WARN,
                    attributes={"where": "child"})
        sdk_log_trace = span.get_span_context().trace_id
    tracer_provider.shutdown()
    logger_provider.shutdown()
    sdk_sent = {span.span_id.hex(): span for resource_spans in
                encode_spans(recorder.get_finished_spans()).resource_spans
                for scope_spans in resource_spans.scope_spans for span in scope_spans.spans}
    # The SDK's metrics through its OTLP/gRPC exporter.
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=daemon.grpc_target, insecure=True, timeout=30),
        export_interval_millis=60_000)
    meter_provider = MeterProvider(metric_readers=[reader],
                                   resource=Resource.create({"service.name": f"sdk-{tag}"}))
    meter_provider.get_meter("tests").create_counter(f"sdk.{tag}.orders").add(5, {"shop": "x"})
    meter_provider.shutdown()
    # OTLP logs and metrics as protobuf over OTLP/HTTP; native metrics.
    logs = otlp_logs(tag, 5)
    post(daemon, "/v1/logs", content=logs.SerializeToString(), headers=PROTOBUF)
    metrics = otlp_metrics(tag)
    post(daemon, "/v1/metrics", content=metrics.SerializeToString(), headers=PROTOBUF)
    for request in native_metrics(tag):
        post(daemon, "/api/v1/metrics", json=request)

    for receiver in ("grpc", "http"):
        def spans_arrived(receiver=receiver):
            spans = otelcol.spans(receiver)
            for sent in (parent, child):
                got, resource = spans[sent["span_id"]]
                assert resource["service.name"] == f"native-{tag}"
                assert (got.trace_id.hex(), got.name, got.parent_span_id.hex()) == (
                    sent["trace_id"], sent["name"], sent["parent_span_id"] or "")
                assert attributes(got.attributes) == sent["attributes"]
                assert [(e.name, attributes(e.attributes)) for e in got.events] == [
                    ("cache-miss", {"key": "user:1"})]
                assert (got.status.code, got.status.message) == (2, "boom")
            for span_id, sent_span in sdk_sent.items():
                got, resource = spans[span_id]
                assert got == sent_span  # the SDK's own encoding, field for field
                assert resource["service.name"] == f"sdk-{tag}"

        wait_until(f"spans in otelcol ({receiver})", spans_arrived)

        def logs_arrived(receiver=receiver):
            records = otelcol.log_records(receiver)
            sent = logs.resource_logs[0].scope_logs[0].log_records
            got = [r for r, _ in records if r.body.string_value.startswith(f"{tag} line")]
            assert got == list(sent)  # as they came: ids, times, body, attributes
            [(sdk_log, resource)] = [(r, res) for r, res in records
                                     if r.body.string_value == f"sdk log {tag}"]
            assert int.from_bytes(sdk_log.trace_id, "big") == sdk_log_trace
            assert attributes(sdk_log.attributes) == {"where": "child"}
            assert resource["service.name"] == f"sdk-{tag}"

        wait_until(f"logs in otelcol ({receiver})", logs_arrived)

        def metrics_arrived(receiver=receiver):
            received = {m.name: m for m, _ in otelcol.metrics(receiver)}
            for sent in metrics.resource_metrics[0].scope_metrics[0].metrics:
                assert received[sent.name] == sent
            orders = received[f"sdk.{tag}.orders"]
            [point] = orders.sum.data_points
            assert (point.as_int, attributes(point.attributes)) == (5, {"shop": "x"})
            check_native_metrics(otelcol, receiver, tag)

        wait_until(f"metrics in otelcol ({receiver})", metrics_arrived)
    for name in ("via-grpc", "via-http"):
        assert scrape(daemon, "flext_collector_exporter_up", exporter=name) == 1
        assert scrape(daemon, "flext_collector_exported_items_total", exporter=name) > 0


def test_what_is_accepted_while_otelcol_is_down_arrives_once_it_is_back(daemon, otelcol):
    """Also across a kill -9 of the collector in the middle of the outage."""
    tag = secrets.token_hex(3)
    otelcol.stop()
    started = time.monotonic()
    spans, logs = [], []
    requests = native_metrics(tag)
    for step in range(3):
        batch = [native_span(tag, f"op-{step}-{i}") for i in range(20)]
        post(daemon, "/api/v1/spans", json=batch)
        spans += batch
        request = otlp_logs(f"{tag}-{step}", 4)
        post(daemon, "/v1/logs", content=request.SerializeToString(), headers=PROTOBUF)
        logs += list(request.resource_logs[0].scope_logs[0].log_records)
        post(daemon, "/api/v1/metrics", json=requests[step])
    for name in ("via-grpc", "via-http"):
        poll(lambda name=name: scrape(daemon, "flext_collector_exporter_up", exporter=name),
             lambda up: up == 0, 10, 0.1, f"{name} down")
    state = httpx.get(f"{daemon.url}/readyz", timeout=10).json()["exporters"]["via-grpc"]
    assert state["state"] == "down"
    assert "UNAVAILABLE" in state["last_error"]
    assert set(state["signals"]) == {"traces", "metrics", "logs"}
    # Accepted means durable: a kill -9 now loses nothing either.
    daemon.kill9()
    daemon.restart()
    for name in ("via-grpc", "via-http"):
        poll(lambda name=name: scrape(daemon, "flext_collector_exporter_up", exporter=name),
             lambda up: up == 0, 10, 0.1, f"{name} down after the restart")
    time.sleep(max(0.0, 2 - (time.monotonic() - started)))  # an outage of 2 s at least

    otelcol.start()
    for receiver in ("grpc", "http"):
        def everything_arrived(receiver=receiver):
            received = otelcol.spans(receiver)
            assert {s["span_id"] for s in spans} <= set(received)
            records = otelcol.log_records(receiver)
            got = [r for r, _ in records if r.body.string_value.startswith(tag)]
            assert sorted(got, key=lambda r: r.time_unix_nano) == sorted(
                logs, key=lambda r: r.time_unix_nano)
            check_native_metrics(otelcol, receiver, tag)

        wait_until(f"everything in otelcol ({receiver})", everything_arrived, timeout=30)
    for name in ("via-grpc", "via-http"):
        poll(lambda name=name: scrape(daemon, "flext_collector_exporter_up", exporter=name),
             lambda up: up == 1, 10, 0.1, f"{name} up again")
        assert scrape(daemon, "flext_collector_export_retries_total", exporter=name) > 0


def test_a_signal_refused_for_good_is_dropped_and_counted_and_the_others_go_on(daemon, otelcol):
    def settled() -> float:
        return scrape(daemon, "flext_collector_queue_items", signal="logs")

    poll(settled, lambda items: items == 0, 20, 0.1, "earlier logs handled")
    dropped = {"exporter": "no-logs", "reason": "permanent_error"}
    before = scrape(daemon, "flext_collector_dropped_items_total", **dropped)
    retries = scrape(daemon, "flext_collector_export_retries_total", exporter="no-logs")
    tag = secrets.token_hex(3)
    post(daemon, "/v1/logs", content=otlp_logs(tag, 3).SerializeToString(), headers=PROTOBUF)
    spans = [native_span(tag, "traced")]
    post(daemon, "/api/v1/spans", json=spans)

    poll(lambda: scrape(daemon, "flext_collector_dropped_items_total", **dropped),
         lambda count: count == before + 3, 20, 0.1, "3 log records dropped")
    wait_until("the span in otelcol (traces_only)",
               lambda: otelcol.spans("traces_only")[spans[0]["span_id"]])
    poll(settled, lambda items: items == 0, 20, 0.1, "the logs left the queue")
    # A 404 is not retried; the records that were dropped stay counted, not re-sent.
    assert scrape(daemon, "flext_collector_export_retries_total", exporter="no-logs") == retries
    assert scrape(daemon, "flext_collector_dropped_items_total", **dropped) == before + 3
    state = httpx.get(f"{daemon.url}/readyz", timeout=10).json()["exporters"]["no-logs"]
    assert "HTTP 404" in state["signals"]["logs"]["last_error"]
    assert state["signals"]["traces"]["state"] == "up"
    assert state["state"] == "down"
