"""@flext_monitor_function: results and exceptions untouched; counters, histograms, spans."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time

import pytest
from opentelemetry import propagate
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flext_observability import flext_monitor_function


class Boom(Exception):
    pass


def spans_by_name(stub):
    return {s["name"]: s for s in stub.items("spans")}


def calls(stub) -> dict[tuple[str, str], float]:
    """Counter totals by (function, outcome) from what was sent."""
    totals: dict[tuple[str, str], float] = {}
    for m in stub.items("metrics"):
        if m["name"] == "flext_function_calls":
            key = (m["labels"]["function"], m["labels"]["outcome"])
            totals[key] = totals.get(key, 0) + m["value"]
    return totals


def test_sync_result_exception_and_metadata(stub_collector, make_factory):
    factory = make_factory(stub_collector.url)
    error = Boom("bad input")

    @flext_monitor_function(factory=factory)
    def compute(x: int, fail: bool = False) -> int:
        """Doc."""
        if fail:
            raise error
        return x * 2

    assert compute(21) == 42
    with pytest.raises(Boom) as raised:
        compute(1, fail=True)
    assert raised.value is error
    assert compute.__name__ == "compute"
    assert compute.__doc__ == "Doc."
    assert compute.__wrapped__.__name__ == "compute"


async def test_async_result_and_exception(stub_collector, make_factory):
    factory = make_factory(stub_collector.url)

    @flext_monitor_function("fetch", factory=factory)
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        if x < 0:
            raise Boom(str(x))
        return x + 1

    assert asyncio.iscoroutinefunction(fetch)
    assert await fetch(1) == 2
    with pytest.raises(Boom, match="-1"):
        await fetch(-1)
    assert factory.flush(5)
    assert calls(stub_collector) == {("fetch", "success"): 1, ("fetch", "error"): 1}


def test_counters_are_summed_and_each_call_is_observed(stub_collector, make_factory):
    factory = make_factory(stub_collector.url)

    @flext_monitor_function(factory=factory)
    def work(fail: bool) -> None:
        if fail:
            raise ValueError("no")

    for i in range(10):
        with contextlib.suppress(ValueError):
            work(i % 5 == 0)
    assert factory.flush(5)
    name = work.__qualname__
    counters = [m for m in stub_collector.items("metrics") if m["type"] == "counter"]
    assert len(counters) == 2  # one summed increment per label set, not one per call
    assert calls(stub_collector) == {(name, "success"): 8, (name, "error"): 2}
    # Durations are aggregated in the client: one OTLP delta point per label set.
    durations = {p["labels"]["outcome"]: p for p in stub_collector.histograms()}
    assert set(durations) == {"success", "error"}
    assert (durations["success"]["count"], durations["error"]["count"]) == (8, 2)
    for point in durations.values():
        assert point["name"] == "flext_function_duration_seconds"
        assert (point["service"], point["labels"]["function"]) == ("sdk-test", name)
        assert point["temporality"] == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
        assert point["bounds"][0] < 0.001
        assert sum(point["counts"]) == point["count"]
        assert 0 <= point["sum"] < 1
        assert point["start"] <= point["time"]
    assert not [m for m in stub_collector.items("metrics") if m["type"] == "histogram"]


def test_durations_refused_by_the_collector_are_counted_as_failed(stub_collector,
                                                                   make_factory):
    factory = make_factory(stub_collector.url)
    stub_collector.answers.append((400, {}))  # the first request of a pass: the histograms

    @flext_monitor_function("refused", factory=factory)
    def work() -> None:
        pass

    for _ in range(5):
        work()
    assert not factory.flush(5)
    assert stub_collector.histograms() == []
    stats = factory.client.stats
    # 1 duration series (failed) + 1 counter series + 5 spans (sent)
    assert (stats.failed, stats.sent, stats.dropped, stats.buffered) == (1, 6, 0, 0)
    assert stats.enqueued == stats.sent + stats.failed
    for _ in range(3):
        work()
    assert factory.flush(5)
    [point] = stub_collector.histograms()
    assert point["count"] == 3  # a new delta: what failed is not sent again


def test_failure_span_records_the_exception(stub_collector, make_factory):
    factory = make_factory(stub_collector.url)

    @flext_monitor_function("checkout", factory=factory)
    def checkout() -> None:
        raise Boom("card declined")

    with pytest.raises(Boom):
        checkout()
    assert factory.flush(5)
    span = spans_by_name(stub_collector)["checkout"]
    assert span["kind"] == "internal"
    assert span["service"] == "sdk-test"
    assert span["status"]["code"] == "error"
    assert "card declined" in span["status"]["message"]
    (event,) = span["events"]
    assert event["name"] == "exception"
    attributes = event["attributes"]
    assert attributes["exception.type"].endswith("Boom")
    assert attributes["exception.message"] == "card declined"
    assert "raise Boom" in attributes["exception.stacktrace"]
    assert span["attributes"]["code.function"] == "checkout"


def test_success_span_has_no_error(stub_collector, make_factory):
    factory = make_factory(stub_collector.url)
    traced = flext_monitor_function(factory=factory)(lambda: None)
    traced()
    assert factory.flush(5)
    (span,) = stub_collector.items("spans")
    assert "status" not in span  # unset, as OpenTelemetry instrumentation leaves a success
    assert "events" not in span
    assert "parent_span_id" not in span
    assert span["end_time"] >= span["start_time"]


def test_bare_decorator_uses_the_qualified_name():
    @flext_monitor_function
    def plain() -> int:
        return 1

    assert plain.__name__ == "plain"
    assert plain.__wrapped__() == 1


def test_nested_calls_are_parent_and_child(stub_collector, make_factory):
    factory = make_factory(stub_collector.url)

    @flext_monitor_function("inner", factory=factory)
    def inner() -> None:
        pass

    @flext_monitor_function("outer", factory=factory)
    def outer() -> None:
        inner()
        inner()

    outer()
    outer()
    assert factory.flush(5)
    spans = stub_collector.items("spans")
    outers = [s for s in spans if s["name"] == "outer"]
    assert len(outers) == 2
    assert outers[0]["trace_id"] != outers[1]["trace_id"]
    for parent in outers:
        children = [s for s in spans if s.get("parent_span_id") == parent["span_id"]]
        assert [c["name"] for c in children] == ["inner", "inner"]
        assert {c["trace_id"] for c in children} == {parent["trace_id"]}


async def test_concurrent_tasks_keep_their_own_parents(stub_collector, make_factory):
    factory = make_factory(stub_collector.url)

    @flext_monitor_function("leaf", factory=factory)
    async def leaf() -> None:
        await asyncio.sleep(0.01)

    @flext_monitor_function("root", factory=factory)
    async def root() -> None:
        await asyncio.gather(leaf(), leaf())

    await asyncio.gather(root(), root())
    assert factory.flush(5)
    spans = stub_collector.items("spans")
    roots = {s["span_id"]: s for s in spans if s["name"] == "root"}
    leaves = [s for s in spans if s["name"] == "leaf"]
    assert len(roots) == 2
    assert len(leaves) == 4
    for parent_id in roots:
        mine = [s for s in leaves if s["parent_span_id"] == parent_id]
        assert len(mine) == 2
        assert {s["trace_id"] for s in mine} == {roots[parent_id]["trace_id"]}


def test_joins_an_active_opentelemetry_span(stub_collector, make_factory):
    factory = make_factory(stub_collector.url)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    headers: dict[str, str] = {}

    @flext_monitor_function("handler", factory=factory)
    def handler() -> None:
        propagate.inject(headers)
        with tracer.start_as_current_span("db-query"):
            pass

    with tracer.start_as_current_span("request") as request:
        handler()
    assert factory.flush(5)
    ours = spans_by_name(stub_collector)["handler"]
    request_context = request.get_span_context()
    assert ours["trace_id"] == format(request_context.trace_id, "032x")
    assert ours["parent_span_id"] == format(request_context.span_id, "016x")
    # Our span is current for OpenTelemetry while the function runs:
    assert headers["traceparent"] == f"00-{ours['trace_id']}-{ours['span_id']}-01"
    (query,) = [s for s in exporter.get_finished_spans() if s.name == "db-query"]
    assert format(query.parent.span_id, "016x") == ours["span_id"]
    assert format(query.context.trace_id, "032x") == ours["trace_id"]


def test_no_collector_calls_stay_cheap_and_bounded(unused_endpoint, make_factory):
    factory = make_factory(unused_endpoint, buffer_limit=100, flush_interval=0.05)

    def bare(x: int) -> int:
        return x + 1

    monitored = flext_monitor_function("hot", factory=factory)(bare)
    n = 5000
    started = time.perf_counter()
    for i in range(n):
        assert monitored(i) == i + 1
    per_call = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for i in range(n):
        bare(i)
    bare_per_call = (time.perf_counter() - started) / n
    assert per_call - bare_per_call < 0.001  # loosely: speed is measured in bench/
    stats = factory.client.stats
    assert stats.sent == 0
    assert stats.dropped > 0
    assert stats.buffered <= 2 * 100
    assert factory.close(timeout=0.5) is False
    stats = factory.client.stats
    assert stats.enqueued == stats.sent + stats.failed + stats.dropped
    assert stats.buffered == 0


def test_a_closed_client_does_not_break_the_function(stub_collector, make_factory):
    factory = make_factory(stub_collector.url)
    factory.close()
    assert flext_monitor_function(factory=factory)(lambda: 7)() == 7
    assert factory.client.stats.dropped > 0


def test_default_is_the_global_factory_flushed_at_exit(unused_endpoint, stub_collector):
    code = (
        "from flext_observability import flext_monitor_function, get_global_factory\n"
        "@flext_monitor_function\n"
        "def job(): return 3\n"
        "assert [job() for _ in range(5)] == [3] * 5\n"
        "assert get_global_factory().config.service_name == 'exit-test'\n"
    )
    env = {
        **os.environ,
        "FLEXT_OBS_ENDPOINT": stub_collector.url,
        "FLEXT_OBS_SERVICE_NAME": "exit-test",
        "FLEXT_OBS_FLUSH_INTERVAL": "60",
    }
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert len(stub_collector.items("spans")) == 5  # sent by the atexit flush
    assert calls(stub_collector) == {("job", "success"): 5}
    started = time.monotonic()
    env["FLEXT_OBS_ENDPOINT"] = unused_endpoint
    env["FLEXT_OBS_EXIT_FLUSH_DEADLINE"] = "0.5"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 10  # the exit flush keeps to its deadline
