"""OTLP/HTTP protobuf spans into one collector process.

1. Throughput: batches of 512 spans, 8 keep-alive connections (wrk), answered only after
   the batch is durably queued.
2. Steady load: 10,000 spans/s in batches of 100 for the measured window; the daemon's CPU
   (share of one core) and RSS on average, beside the OpenTelemetry Collector testbed's
   anchors for the same scenario (OTLP/HTTP in, OTLP out): 6.3% of one core, 53 MiB.
"""

from __future__ import annotations

import os
import threading
import time

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import common
from bench.common import collector, cpu_seconds, rss_mib, spread, wrk_post

GO_COLLECTOR_CPU_PERCENT = 6.3
GO_COLLECTOR_RSS_MIB = 53.0
# Spans held with no exporter (they would be refused by default).
_BIG_QUEUE = {"queue": {"max_items": 500_000_000, "max_bytes": 50 * 1024**3,
                        "hold_unexported": True}}
WORKERS = os.cpu_count() or 1


def traces_body(spans: int, seed: int = 1) -> bytes:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    attribute = resource.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", "bench"
    scope = resource.scope_spans.add()
    scope.scope.name = "bench"
    for i in range(spans):
        span = scope.spans.add()
        span.trace_id = (seed * 1_000_003 + i + 1).to_bytes(16, "big")
        span.span_id = (i + 1).to_bytes(8, "big")
        span.name = f"GET /item/{i % 20}"
        span.kind = 2
        span.start_time_unix_nano = 1_700_000_000_000_000_000 + i
        span.end_time_unix_nano = span.start_time_unix_nano + 1_500_000
        for key, value in (("http.method", "GET"), ("http.route", "/item/{id}")):
            kv = span.attributes.add()
            kv.key, kv.value.string_value = key, value
        kv = span.attributes.add()
        kv.key, kv.value.int_value = "http.status_code", 200
    return request.SerializeToString()


def steady_load(url: str, pid: int, spans_per_second: int, batch: int, seconds: float) -> dict:
    """Send at a fixed rate; sample the daemon's CPU and RSS over the window."""
    bodies = [traces_body(batch, seed) for seed in range(1, 11)]
    interval = batch / spans_per_second
    rss: list[float] = []
    stop = threading.Event()

    def sample_rss() -> None:
        while not stop.wait(0.5):
            rss.append(rss_mib([pid]))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    failures = sent = 0
    with httpx.Client(headers={"Content-Type": "application/x-protobuf"}) as client:
        for body in bodies[:3]:
            client.post(f"{url}/v1/traces", content=body)
        cpu_start, started = cpu_seconds([pid]), time.monotonic()
        sampler.start()
        next_send = started
        while time.monotonic() - started < seconds:
            answer = client.post(f"{url}/v1/traces", content=bodies[sent % len(bodies)])
            failures += answer.status_code != 200
            sent += 1
            next_send += interval
            time.sleep(max(0.0, next_send - time.monotonic()))
        elapsed = time.monotonic() - started
        cpu = cpu_seconds([pid]) - cpu_start
    stop.set()
    sampler.join()
    return {
        "steady_spans_per_s": sent * batch / elapsed,
        "steady_cpu_percent": 100 * cpu / elapsed,
        "steady_rss_mib": sum(rss) / len(rss) if rss else rss_mib([pid]),
        "steady_failures": failures,
    }


def run(seconds: int = 10) -> dict[str, list[float]]:
    """Each figure `common.RUNS` times, the three loads one after the other in each round."""
    result: dict[str, list[float]] = {}

    def keep(figures: dict[str, float]) -> None:
        for key, value in figures.items():
            result.setdefault(key, []).append(value)

    for _ in range(common.RUNS):
        for mode, workers in (("", 0), ("workers_", WORKERS)):
            config = {**_BIG_QUEUE, "server": {"workers": workers}}
            with collector(config) as (url, proc):
                cpu = cpu_seconds([proc.pid])
                load = wrk_post(f"{url}/v1/traces", traces_body(512), "application/x-protobuf",
                                8, min(seconds, 10))
                cpu = cpu_seconds([proc.pid]) - cpu
            keep({f"{mode}ingest_spans_per_s": load.requests_per_second * 512,
                  f"{mode}ingest_errors": load.errors})
            if not workers:
                # Spans per CPU-second of the collector: the cost of a span, whatever share
                # of the cores the process got on a busy machine.
                keep({"ingest_spans_per_cpu_s": (load.requests - load.errors) * 512 / cpu})
        with collector(_BIG_QUEUE) as (url, proc):
            keep(steady_load(url, proc.pid, 10_000, 100, max(seconds, 10)))
    return result


def report(result: dict[str, list[float]]) -> str:
    cpu = common.median(result["steady_cpu_percent"])
    rss = common.median(result["steady_rss_mib"])
    return (
        "otlp/http spans into the daemon (median of the runs, min-max):\n"
        f"  ingest, 512-span batches, 8 conns  {spread(result['ingest_spans_per_s']):>28} spans/s"
        f"  (non-2xx {sum(result['ingest_errors']):.0f})\n"
        f"    per CPU-second of the collector  {spread(result['ingest_spans_per_cpu_s']):>28}"
        " spans\n"
        f"  {f'the same, {WORKERS} ingest workers':35}"
        f"{spread(result['workers_ingest_spans_per_s']):>28} spans/s"
        f"  (non-2xx {sum(result['workers_ingest_errors']):.0f})\n"
        f"  steady {common.median(result['steady_spans_per_s']):,.0f} spans/s in batches of 100"
        f" (failures {sum(result['steady_failures']):.0f}):\n"
        f"    cpu  {spread(result['steady_cpu_percent'], '.1f')}% of one core"
        f"   (Go collector testbed: {GO_COLLECTOR_CPU_PERCENT}%,"
        f" ratio {cpu / GO_COLLECTOR_CPU_PERCENT:.1f}x)\n"
        f"    rss  {spread(result['steady_rss_mib'], '.1f')} MiB"
        f"   (Go collector testbed: {GO_COLLECTOR_RSS_MIB:.0f} MiB,"
        f" ratio {rss / GO_COLLECTOR_RSS_MIB:.1f}x)"
    )


if __name__ == "__main__":
    print(report(run()))
