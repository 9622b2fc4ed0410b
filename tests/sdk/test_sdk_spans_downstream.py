"""Decorated calls' spans, nested ones included, reach the downstream OTLP receiver."""

from __future__ import annotations

import pytest

from helpers import sdk_calls
from helpers.otlp_sink import OtlpSink
from helpers.procs import poll

SERVICE = "sdk-spans"


@pytest.fixture
def sink():
    started = OtlpSink().start()
    yield started
    started.stop()


def test_nested_calls_arrive_with_their_parent_ids(daemon_factory, make_factory, sink):
    daemon = daemon_factory({"exporters": {"jaeger": {"endpoint": sink.grpc_endpoint}}})
    factory = make_factory(daemon.url, service_name=SERVICE, flush_interval=0.1)

    context = sdk_calls.run_nested_calls(factory)

    wanted = {sdk_calls.OUTER, sdk_calls.INNER}
    spans = poll(lambda: {s.name: s for s in sink.spans() if s.name in wanted},
                 lambda found: set(found) == wanted, 20, 0.1, "both spans at the sink")
    outer_span, inner_span = spans[sdk_calls.OUTER], spans[sdk_calls.INNER]
    assert outer_span.trace_id == inner_span.trace_id == f"{context.trace_id:032x}"
    assert outer_span.parent_span_id == f"{context.span_id:016x}"
    assert inner_span.parent_span_id == outer_span.span_id
    assert inner_span.resource["service.name"] == SERVICE
    assert [name for name, _ in inner_span.events] == ["exception"]
    assert inner_span.events[0][1]["exception.type"] == "ValueError"
