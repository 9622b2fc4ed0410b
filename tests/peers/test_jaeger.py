"""Spans reach the real Jaeger v2 through the collector's Jaeger exporter, and Jaeger's own query
API (``/api/services``, ``/api/traces/<id>``) returns them as they were sent: trace and span
ids, parents, names, kinds, attributes, events, status, times, resource and scope.

Three sources: native spans (``POST /api/v1/spans``), the SDK (``flext_monitor_function``
through its client) and OTLP from the official OpenTelemetry SDK exporters.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from helpers import sdk_calls
from helpers.exposition import total
from helpers.peers import Jaeger, span_hex, trace_hex
from helpers.procs import poll

PROTOCOLS = ["grpc", "http/protobuf"]
# Retries every <= 0.5 s, so that a Jaeger that comes back is used at once.
FAST_RETRY = {"initial_interval": 0.1, "max_interval": 0.5}
# Tags Jaeger's OTLP -> Jaeger translation adds to every span; each is checked on its own.
TRANSLATION_TAGS = {"span.kind", "otel.status_code", "otel.status_description", "error",
                    "otel.scope.name", "otel.scope.version"}
JAEGER_KINDS = {SpanKind.INTERNAL: "internal", SpanKind.SERVER: "server",
                SpanKind.CLIENT: "client", SpanKind.PRODUCER: "producer",
                SpanKind.CONSUMER: "consumer"}


def seen(trace: dict[str, Any], span: dict[str, Any]) -> dict[str, Any]:
    """A span from Jaeger's v1 API, in the shape ``expected_*`` build."""
    tags = {tag["key"]: tag["value"] for tag in span["tags"]}
    parents = [span_hex(ref["spanID"]) for ref in span["references"]
               if ref["refType"] == "CHILD_OF"]
    status_code = tags.get("otel.status_code", "UNSET")
    assert tags.get("error", False) is (status_code == "ERROR"), tags
    return {
        "trace_id": trace_hex(span["traceID"]),
        "span_id": span_hex(span["spanID"]),
        "parent_span_id": parents[0] if parents else None,
        "name": span["operationName"],
        "service": trace["processes"][span["processID"]]["serviceName"],
        "kind": tags.get("span.kind"),
        "status": (status_code, tags.get("otel.status_description", "")),
        "attributes": {k: v for k, v in tags.items() if k not in TRANSLATION_TAGS},
        "events": [
            (fields.pop("event"), log["timestamp"], fields)
            for log in span["logs"]
            for fields in [{f["key"]: f["value"] for f in log["fields"]}]
        ],
        "start_us": span["startTime"],
        "duration_us": span["duration"],
    }


def spans_by_id(traces: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every span Jaeger returned, by span id (a list: a span stored twice shows twice)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for trace in traces.values():
        for span in trace["spans"]:
            found.setdefault(span_hex(span["spanID"]), []).append(seen(trace, span))
    return found


def wanted(expected: Sequence[dict[str, Any]]) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = {}
    for span in expected:
        ids.setdefault(span["trace_id"], set()).add(span["span_id"])
    return ids


# --- native spans -------------------------------------------------------------------------

def native_trace(service: str) -> list[dict[str, Any]]:
    """A server span that failed and its client child that succeeded, with events."""
    trace_id, root_id, child_id = secrets.token_hex(16), secrets.token_hex(8), secrets.token_hex(8)
    now = time.time_ns()
    root = {
        "trace_id": trace_id, "span_id": root_id, "name": "GET /users/{id}", "service": service,
        "kind": "server", "start_time": now - 9_000_000, "end_time": now,
        "status": {"code": "error", "message": "upstream timed out"},
        "attributes": {"http.route": "/users/{id}", "http.status_code": 504, "retried": True,
                       "ratio": 0.25},
        "events": [{"name": "timeout", "time": now - 1_000_000,
                    "attributes": {"after.ms": 8000, "peer": "db-1"}}],
    }
    child = {
        "trace_id": trace_id, "span_id": child_id, "parent_span_id": root_id,
        "name": "SELECT users", "service": service, "kind": "client",
        "start_time": now - 8_500_000, "end_time": now - 1_234_567,
        "status": {"code": "ok"}, "attributes": {"db.system": "postgresql", "rows": 1},
        "events": [{"name": "connected", "time": now - 8_400_000, "attributes": {}}],
    }
    return [root, child]


def expected_native(span: dict[str, Any]) -> dict[str, Any]:
    status = span.get("status", {})
    return {
        "trace_id": span["trace_id"], "span_id": span["span_id"],
        "parent_span_id": span.get("parent_span_id"), "name": span["name"],
        "service": span["service"], "kind": span["kind"],
        "status": (status.get("code", "unset").upper(), status.get("message", "")),
        "attributes": span["attributes"],
        "events": [(e["name"], e["time"] // 1000, e["attributes"]) for e in span["events"]],
        "start_us": span["start_time"] // 1000,
        "duration_us": (span["end_time"] - span["start_time"]) // 1000,
    }


# --- OTLP from the official OpenTelemetry SDK ---------------------------------------------

OTLP_RESOURCE = {"service.name": "otlp-svc", "service.version": "1.2.3",
                 "deployment.environment": "interop"}


def otlp_trace() -> list[ReadableSpan]:
    """checkout (server) -> charge (client, failed, with an event), recorded in memory."""
    recorder = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(OTLP_RESOURCE))
    provider.add_span_processor(SimpleSpanProcessor(recorder))
    tracer = provider.get_tracer("tests.peers", "0.1.0")
    with (
        tracer.start_as_current_span("checkout", kind=SpanKind.SERVER,
                                     attributes={"cart.items": 3, "user.vip": False}),
        tracer.start_as_current_span("charge", kind=SpanKind.CLIENT,
                                     attributes={"amount": 12.5}) as charge,
    ):
        charge.add_event("retry", {"attempt": 2, "gateway": "acme"})
        charge.set_status(Status(StatusCode.ERROR, "card declined"))
    provider.shutdown()
    return list(recorder.get_finished_spans())


def expected_otlp(span: ReadableSpan) -> dict[str, Any]:
    assert span.end_time is not None
    assert span.start_time is not None
    status = span.status.status_code.name, span.status.description or ""
    return {
        "trace_id": f"{span.context.trace_id:032x}", "span_id": f"{span.context.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "name": span.name, "service": OTLP_RESOURCE["service.name"],
        "kind": JAEGER_KINDS[span.kind], "status": status,
        "attributes": dict(span.attributes or {}),
        "events": [(e.name, e.timestamp // 1000, dict(e.attributes or {})) for e in span.events],
        "start_us": span.start_time // 1000,
        "duration_us": (span.end_time - span.start_time) // 1000,
    }


def export_otlp(daemon, protocol: str, spans: Sequence[ReadableSpan]) -> None:
    """Through the SDK's OTLP exporter of that protocol, to the collector's OTLP receiver."""
    exporter = (GrpcSpanExporter(endpoint=daemon.grpc_target, insecure=True, timeout=30)
                if protocol == "grpc"
                else HttpSpanExporter(endpoint=f"{daemon.url}/v1/traces", timeout=30))
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


# --- the tests ----------------------------------------------------------------------------

def jaeger_exporter(jaeger: Jaeger, protocol: str, **settings: Any) -> dict[str, Any]:
    return {"exporters": {"jaeger": {"endpoint": jaeger.otlp_endpoint(protocol),
                                     "protocol": protocol, **settings}}}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_native_sdk_and_otlp_spans_reach_jaeger_as_sent(jaeger, daemon_factory, sdk_factory,
                                                        protocol):
    daemon = daemon_factory(jaeger_exporter(jaeger, protocol))

    native = native_trace("native-svc")
    answer = httpx.post(f"{daemon.url}/api/v1/spans", json=native, timeout=10)
    assert answer.status_code == 202, answer.text

    otlp = otlp_trace()
    export_otlp(daemon, protocol, otlp)

    context = sdk_calls.run_nested_calls(sdk_factory(daemon.url, "sdk-svc"))
    sdk_trace = f"{context.trace_id:032x}"

    expected = [*map(expected_native, native), *map(expected_otlp, otlp)]
    traces = jaeger.wait_for_spans(wanted(expected))
    # The SDK makes its own span ids: its spans are found by name in the request's trace.
    traces[sdk_trace] = poll(
        lambda: jaeger.trace(sdk_trace),
        lambda trace: trace is not None
        and {sdk_calls.OUTER, sdk_calls.INNER} <= {s["operationName"] for s in trace["spans"]},
        20, 0.2, "the SDK's spans in Jaeger")

    found = spans_by_id(traces)
    for span in expected:
        assert found[span["span_id"]] == [span]

    sdk = {s["name"]: s for s in (seen(traces[sdk_trace], span)
                                  for span in traces[sdk_trace]["spans"])}
    assert len(traces[sdk_trace]["spans"]) == len(sdk) == 2  # each once
    outer_span, inner_span = sdk[sdk_calls.OUTER], sdk[sdk_calls.INNER]
    assert outer_span["parent_span_id"] == f"{context.span_id:016x}"
    assert inner_span["parent_span_id"] == outer_span["span_id"]
    assert {outer_span["service"], inner_span["service"]} == {"sdk-svc"}
    assert (outer_span["kind"], inner_span["kind"]) == ("internal", "internal")
    assert outer_span["status"] == ("UNSET", "")
    assert inner_span["status"] == ("ERROR", "ValueError: boom")
    assert inner_span["attributes"] == {"code.function": sdk_calls.INNER,
                                        "code.namespace": sdk_calls.__name__}
    [(event, _, fields)] = inner_span["events"]
    assert (event, fields["exception.type"], fields["exception.message"]) == (
        "exception", "ValueError", "boom")
    assert "raise ValueError" in fields["exception.stacktrace"]

    # Resource and scope of the OTLP spans: kept as they came.
    otlp_trace_id = expected_otlp(otlp[0])["trace_id"]
    otlp_process = traces[otlp_trace_id]["processes"]
    [process] = {p["serviceName"]: p for p in otlp_process.values()}.values()
    resource = {tag["key"]: tag["value"] for tag in process["tags"]}
    assert {k: resource.get(k) for k in OTLP_RESOURCE if k != "service.name"} == {
        "service.version": "1.2.3", "deployment.environment": "interop"}
    for span in traces[otlp_trace_id]["spans"]:
        tags = {tag["key"]: tag["value"] for tag in span["tags"]}
        assert (tags["otel.scope.name"], tags["otel.scope.version"]) == ("tests.peers", "0.1.0")

    assert {"native-svc", "otlp-svc", "sdk-svc"} <= set(jaeger.services())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_spans_accepted_while_jaeger_is_down_all_arrive_once_it_is_back(
        jaeger, daemon_factory, protocol):
    daemon = daemon_factory(jaeger_exporter(jaeger, protocol, retry=FAST_RETRY))
    before = native_trace("outage-svc")
    assert httpx.post(f"{daemon.url}/api/v1/spans", json=before, timeout=10).status_code == 202
    jaeger.wait_for_spans(wanted(list(map(expected_native, before))))

    jaeger.stop()
    sent: list[dict[str, Any]] = []
    started = time.monotonic()
    for _ in range(10):  # 10 traces of 20 spans, over the outage's first 2 s or more
        trace_id = secrets.token_hex(16)
        batch = [native_trace("outage-svc")[0] | {"trace_id": trace_id,
                                                   "span_id": secrets.token_hex(8),
                                                   "name": f"op-{len(sent) + i}"}
                 for i in range(20)]
        answer = httpx.post(f"{daemon.url}/api/v1/spans", json=batch, timeout=10)
        assert answer.status_code == 202, answer.text
        sent += batch
        time.sleep(0.2)
    otlp = otlp_trace()
    export_otlp(daemon, protocol, otlp)
    metrics = httpx.get(f"{daemon.url}/metrics", timeout=10).text
    assert total(metrics, "flext_collector_export_retries_total", exporter="jaeger") >= 1

    time.sleep(max(0.0, 3 - (time.monotonic() - started)))  # an outage of 3 s at least
    jaeger.start()  # memory storage: an empty Jaeger, on the same ports
    expected = [*map(expected_native, sent), *map(expected_otlp, otlp)]
    found = spans_by_id(jaeger.wait_for_spans(wanted(expected), timeout=30))
    for span in expected:
        assert found[span["span_id"]] == [span]  # each exactly once, as sent
    assert jaeger.trace(before[0]["trace_id"]) is None  # a new Jaeger, not the one before
