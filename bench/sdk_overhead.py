"""Per-call cost of `@flext_monitor_function` beside a bare call and the OpenTelemetry SDK.

Three versions of one small function, timed with timeit-style loops (best of 5):
- bare;
- under `@flext_monitor_function` (counter by outcome, duration histogram, a span), its
  client pointed at an unused port (nothing is sent; the bounded buffers drop the oldest)
  or at a real collector when FLEXT_OBS_ENDPOINT is set;
- instrumented directly with the OpenTelemetry SDK the same way: a span from a
  TracerProvider with a BatchSpanProcessor (exporter that discards), plus a Meter counter
  and histogram (in-memory reader).

    python -m bench.sdk_overhead     # or: python bench/sdk_overhead.py
"""

from __future__ import annotations

import os
import socket
import time
import timeit
from collections.abc import Callable, Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode

from flext_observability import (
    FlextObservabilityConfig,
    FlextObservabilityMasterFactory,
    flext_monitor_function,
)


def work(x: int) -> int:
    return x * 2 + 1


class DiscardingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def unused_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


Work = Callable[[int], int]


def otel_instrumented(func: Work) -> tuple[Work, Callable[[], None]]:
    """`func` with a span, a calls counter and a duration histogram, as the SDK docs show."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DiscardingExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    tracer = tracer_provider.get_tracer("bench")
    meter = meter_provider.get_meter("bench")
    calls = meter.create_counter("function_calls")
    duration = meter.create_histogram("function_duration", unit="s")
    name = func.__qualname__
    success = {"function": name, "outcome": "success"}
    error = {"function": name, "outcome": "error"}

    def instrumented(x: int) -> int:
        started = time.perf_counter()
        with tracer.start_as_current_span(name, record_exception=False) as span:
            try:
                result = func(x)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                calls.add(1, error)
                duration.record(time.perf_counter() - started, error)
                raise
        calls.add(1, success)
        duration.record(time.perf_counter() - started, success)
        return result

    def shutdown() -> None:
        tracer_provider.shutdown()
        meter_provider.shutdown()

    return instrumented, shutdown


def ns_per_call(func: Callable[[int], int], seconds: float) -> float:
    timer = timeit.Timer(lambda: func(1))
    number, elapsed = timer.autorange()
    number = max(1, int(number * (seconds / 5) / max(elapsed, 1e-9)))
    return min(timer.repeat(repeat=5, number=number)) / number * 1e9


def run(seconds: float = 3.0) -> dict[str, float | str]:
    """ns per call of each version (about `seconds` of timing each) and the ratios."""
    endpoint = os.environ.get("FLEXT_OBS_ENDPOINT") or unused_endpoint()
    factory = FlextObservabilityMasterFactory(
        FlextObservabilityConfig(endpoint=endpoint, service_name="sdk-overhead-bench")
    )
    monitored = flext_monitor_function(factory=factory)(work)
    otel, otel_shutdown = otel_instrumented(work)
    try:
        bare_ns = ns_per_call(work, seconds)
        flext_ns = ns_per_call(monitored, seconds)
        otel_ns = ns_per_call(otel, seconds)
    finally:
        otel_shutdown()
        factory.close(timeout=1)
    stats = factory.client.stats
    return {
        "endpoint": endpoint,
        "bare_ns": bare_ns,
        "flext_ns": flext_ns,
        "otel_sdk_ns": otel_ns,
        "flext_overhead_ns": flext_ns - bare_ns,
        "otel_sdk_overhead_ns": otel_ns - bare_ns,
        "flext_vs_bare": flext_ns / bare_ns,
        "otel_sdk_vs_bare": otel_ns / bare_ns,
        "otel_sdk_vs_flext": otel_ns / flext_ns,
        "client_sent": stats.sent,
        "client_dropped": stats.dropped,
    }


def report(result: dict[str, float | str]) -> str:
    return (
        f"per-call cost (client endpoint {result['endpoint']}):\n"
        f"  bare function            {result['bare_ns']:>10,.0f} ns\n"
        f"  @flext_monitor_function  {result['flext_ns']:>10,.0f} ns"
        f"  (+{result['flext_overhead_ns']:,.0f} ns, x{result['flext_vs_bare']:.1f})\n"
        f"  OpenTelemetry SDK        {result['otel_sdk_ns']:>10,.0f} ns"
        f"  (+{result['otel_sdk_overhead_ns']:,.0f} ns, x{result['otel_sdk_vs_bare']:.1f})\n"
        f"  OpenTelemetry SDK / flext  {result['otel_sdk_vs_flext']:.2f}\n"
        f"  client: {result['client_sent']:,} items sent, {result['client_dropped']:,} dropped"
    )


if __name__ == "__main__":
    print(report(run()), flush=True)
