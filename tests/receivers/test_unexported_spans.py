"""Spans with no span exporter configured (the default), against the real daemon: refused at
once naming the key to set, over OTLP/HTTP, OTLP/gRPC and the native API; or, with
`queue.hold_unexported: true`, held and shown on /readyz and in the log."""

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from helpers.exposition import sample
from helpers.procs import poll

NOW = 1_795_773_000 * 10**9
NATIVE = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
          "name": "op", "service": "s", "start_time": NOW, "end_time": NOW + 1000}
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def traces(count=3) -> bytes:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i in range(1, count + 1):
        spans.add(trace_id=bytes(range(1, 17)), span_id=i.to_bytes(8, "big"), name="op",
                  start_time_unix_nano=NOW, end_time_unix_nano=NOW + 1)
    return request.SerializeToString()


def post_http(daemon, count=3):
    answer = httpx.post(f"{daemon.url}/v1/traces", content=traces(count), timeout=10,
                        headers={"Content-Type": "application/x-protobuf"})
    assert answer.status_code == 200, answer.text
    return ExportTraceServiceResponse.FromString(answer.content).partial_success


def post_grpc(daemon):
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        call = channel.unary_unary(EXPORT, request_serializer=None,
                                   response_deserializer=ExportTraceServiceResponse.FromString)
        return call(traces(), timeout=10).partial_success


@pytest.mark.parametrize("workers", [0, 1], ids=["one-process", "1-worker"])
def test_spans_are_refused_naming_the_exporter_key(daemon_factory, workers):
    daemon = daemon_factory({"server": {"workers": workers}})
    for partial in (post_http(daemon), post_grpc(daemon)):
        assert partial.rejected_spans == 3
        assert "exporters.jaeger" in partial.error_message
        assert "queue.hold_unexported" in partial.error_message
    native = httpx.post(f"{daemon.url}/api/v1/spans", json=NATIVE, timeout=10)
    assert native.status_code == 422, native.text
    assert "exporters.jaeger" in native.json()["errors"][0]["message"]

    ready = httpx.get(f"{daemon.url}/readyz", timeout=10).json()
    assert ready["queue"]["items"] == 0
    assert "held" not in ready
    poll(lambda: httpx.get(f"{daemon.url}/metrics", timeout=10).text,
         lambda text: sample(text, "flext_collector_refused_items_total", signal="spans",
                             reason="no_exporter") == 7, 10, 0.1, "7 spans counted")
    assert "spans are refused: no span exporter is configured" in daemon.log_tail(200)


def test_held_spans_are_shown_on_readyz_and_logged(daemon_factory):
    daemon = daemon_factory({"queue": {"hold_unexported": True}})
    assert post_http(daemon, 5).rejected_spans == 0
    assert httpx.post(f"{daemon.url}/api/v1/spans", json=NATIVE, timeout=10).status_code == 202
    held = httpx.get(f"{daemon.url}/readyz", timeout=10).json()["held"]["spans"]
    assert held["items"] == 6
    assert "exporters.jaeger" in held["reason"]
    poll(lambda: daemon.log_tail(200), lambda log: "holding 6 spans in the queue" in log, 10,
         0.1, "the held spans logged")
