"""Spans in (native JSON and the OpenTelemetry SDK) reach an OTLP receiver unchanged."""

import concurrent.futures
import secrets
import time

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from helpers.procs import poll


def native_span(name="native-op", **extra):
    now = time.time_ns()
    return {
        "trace_id": secrets.token_hex(16), "span_id": secrets.token_hex(8), "name": name,
        "service": "native-svc", "kind": "server", "start_time": now - 5_000_000,
        "end_time": now, "attributes": {"http.route": "/users", "retries": 2, "ok": True},
        "events": [{"name": "cache-miss", "time": now - 1_000_000,
                    "attributes": {"key": "user:1"}}],
        **extra,
    }


def sdk_spans(count=1):
    """`count` finished spans made with the OpenTelemetry SDK, and their (trace, span) ids."""
    recorder = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-svc"}))
    provider.add_span_processor(SimpleSpanProcessor(recorder))
    tracer = provider.get_tracer("tests")
    for i in range(count):
        with tracer.start_as_current_span("sdk-op", attributes={"n": i, "db": "users"}) as span:
            span.add_event("queried", {"rows": 3})
    spans = recorder.get_finished_spans()
    ids = [(f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}") for s in spans]
    return spans, ids


def sdk_export(grpc_target, spans):
    """Export through the SDK's OTLP/gRPC exporter (it retries on throttling by itself)."""
    exporter = OTLPSpanExporter(endpoint=grpc_target, insecure=True, timeout=30)
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def post_spans(daemon, spans):
    return httpx.post(f"{daemon.url}/api/v1/spans", json=spans, timeout=10)


def jaeger(endpoint, **settings):
    return {"exporters": {"jaeger": {"endpoint": endpoint, **settings}}}


# Retries every <= 0.5 s, so that a downstream that comes back is used at once.
FAST_RETRY = {"initial_interval": 0.1, "max_interval": 0.5}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_native_and_sdk_spans_reach_the_receiver(daemon_factory, otlp_sink, protocol):
    endpoint = otlp_sink.grpc_endpoint if protocol == "grpc" else otlp_sink.http_endpoint
    daemon = daemon_factory(jaeger(endpoint, protocol=protocol, headers={"x-tenant": "t1"}))
    native = [native_span(), native_span("second-op")]
    answer = post_spans(daemon, native)
    assert answer.status_code == 202, answer.text
    spans, sdk = sdk_spans()
    assert sdk_export(daemon.grpc_target, spans) is SpanExportResult.SUCCESS

    wanted = {s["span_id"] for s in native} | {span_id for _, span_id in sdk}
    otlp_sink.wait_for_span_ids(wanted)
    received = {span.span_id: span for span in otlp_sink.spans()}
    for sent in native:
        got = received[sent["span_id"]]
        assert (got.trace_id, got.name, got.resource["service.name"]) == (
            sent["trace_id"], sent["name"], "native-svc")
        assert got.attributes == sent["attributes"]
        assert got.events == [("cache-miss", {"key": "user:1"})]
    for trace_id, span_id in sdk:
        got = received[span_id]
        assert (got.trace_id, got.name, got.resource["service.name"]) == (
            trace_id, "sdk-op", "sdk-svc")
        assert got.attributes == {"n": 0, "db": "users"}
        assert got.events == [("queried", {"rows": 3})]
    if protocol == "http/protobuf":
        headers = otlp_sink.http_headers[0]
        assert headers["Content-Encoding"] == "gzip"
        assert headers["x-tenant"] == "t1"


def test_spans_accepted_during_an_outage_all_arrive_after_it(daemon_factory, otlp_sink, scrape):
    daemon = daemon_factory(jaeger(otlp_sink.grpc_endpoint, retry=FAST_RETRY))
    otlp_sink.stop()
    started = time.monotonic()
    sent = []
    metric = {"name": "outage_probe", "type": "counter", "value": 1, "service": "probe"}
    # The outage: at least 5 s and 200 spans (a loaded machine sends fewer per second).
    while time.monotonic() - started < 5 or len(sent) < 200:
        batch = [native_span(f"op-{len(sent) + i}") for i in range(20)]
        assert post_spans(daemon, batch).status_code == 202
        sent += batch
        # Ingestion of other signals and the scrape keep working meanwhile.
        answer = httpx.post(f"{daemon.url}/api/v1/metrics", json=metric, timeout=10)
        assert answer.status_code == 202
        time.sleep(0.25)
    assert scrape(daemon, "outage_probe_total", job="probe") is not None
    assert scrape(daemon, "flext_collector_exporter_up", exporter="jaeger") == 0
    assert scrape(daemon, "flext_collector_export_retries_total", exporter="jaeger") >= 3
    state = httpx.get(f"{daemon.url}/readyz", timeout=10).json()["exporters"]["jaeger"]
    assert state["state"] == "down"
    assert "UNAVAILABLE" in state["last_error"]

    otlp_sink.start()
    otlp_sink.wait_for_span_ids({s["span_id"] for s in sent}, timeout=15)
    poll(lambda: scrape(daemon, "flext_collector_exporter_up", exporter="jaeger"),
         lambda up: up == 1, 5, 0.1, "jaeger exporter up again")
    assert scrape(daemon, "flext_collector_exported_items_total", exporter="jaeger") >= len(sent)


def test_a_full_queue_pushes_back_and_what_was_accepted_arrives(daemon_factory, otlp_sink,
                                                                scrape):
    daemon = daemon_factory({
        # Spans may fill half the queue (queue.signal_share): 200 items.
        "queue": {"max_items": 400, "retry_after_seconds": 1},
        **jaeger(otlp_sink.grpc_endpoint, retry=FAST_RETRY),
    })
    otlp_sink.fail()
    accepted = [native_span(f"op-{i}") for i in range(200)]
    for start in range(0, 200, 50):
        assert post_spans(daemon, accepted[start:start + 50]).status_code == 202
    refused = post_spans(daemon, [native_span("one-too-many")])
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"

    spans, sdk = sdk_spans(20)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        result = pool.submit(sdk_export, daemon.grpc_target, spans)
        # The SDK is refused (RESOURCE_EXHAUSTED) at least once before the sink comes back.
        poll(lambda: scrape(daemon, "flext_collector_refused_items_total",
                            signal="spans", reason="queue_full"),
             lambda n: n is not None and n >= 21, 10, 0.1, "the SDK export refused")
        otlp_sink.recover()
        assert result.result(timeout=30) is SpanExportResult.SUCCESS
    wanted = {s["span_id"] for s in accepted} | {span_id for _, span_id in sdk}
    otlp_sink.wait_for_span_ids(wanted, timeout=15)


def test_kill_9_during_delivery_loses_no_accepted_span(daemon_factory, otlp_sink):
    batch_items, senders = 25, 2
    daemon = daemon_factory(jaeger(otlp_sink.grpc_endpoint, retry=FAST_RETRY,
                                   batch_max_items=batch_items, num_senders=senders))
    otlp_sink.delay = 0.2  # a slow Jaeger: about 10 batches/s
    sent = [native_span(f"op-{i}") for i in range(1000)]
    for start in range(0, len(sent), batch_items):
        assert post_spans(daemon, sent[start:start + batch_items]).status_code == 202
    poll(lambda: otlp_sink.span_count, lambda n: n >= 200, 10, 0.05, "delivery under way")
    daemon.kill9()
    assert otlp_sink.span_count < len(sent)

    otlp_sink.delay = 0
    daemon.restart()
    otlp_sink.wait_for_span_ids({s["span_id"] for s in sent}, timeout=15)
    # Sent twice at most: the batches in flight or done but not yet acknowledged.
    duplicates = len(otlp_sink.spans()) - len(sent)
    assert duplicates <= 2 * senders * batch_items
