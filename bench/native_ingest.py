"""Native metric samples/s into the collector vs. the Prometheus Pushgateway, same samples.

Batches of 1,000 counter samples (1,000 distinct series), 8 keep-alive connections, driven
by wrk. The collector answers 202 only after the batch is durably queued (disk queue) and
aggregates every sample into /metrics as it goes; the Pushgateway keeps pushes in memory.
The collector runs twice: in one process (`server.workers: 0`, the default) and with one
ingest worker per core (`server.workers: <cores>`); the ratio is the latter's.
"""

from __future__ import annotations

import os
import time

import httpx
import orjson
from tests.helpers.exposition import total

from bench.common import collector, pushgateway, wrk_post

SAMPLES = 1000
CONNECTIONS = 8
WORKERS = os.cpu_count() or 1


def native_body() -> bytes:
    return orjson.dumps([
        {"name": "bench_requests", "type": "counter", "value": 1, "service": "bench",
         "labels": {"path": f"/p{i}"}}
        for i in range(SAMPLES)
    ])


def pushgateway_body() -> bytes:
    lines = ["# TYPE bench_requests_total counter"]
    lines += [f'bench_requests_total{{path="/p{i}"}} 1' for i in range(SAMPLES)]
    return ("\n".join(lines) + "\n").encode()


def aggregation_lag(url: str, timeout: float = 60) -> float:
    """Seconds after the load stopped until every accepted sample was in /metrics."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        received = total(text, "flext_collector_received_items_total", signal="metrics")
        exported = total(text, "flext_collector_exported_items_total", exporter="prometheus")
        if received and exported >= received:
            return time.monotonic() - start
        time.sleep(0.05)
    raise RuntimeError(f"samples still not aggregated {timeout}s after the load stopped")


def run(seconds: int = 10) -> dict[str, float]:
    with pushgateway() as url:
        pgw = wrk_post(f"{url}/metrics/job/bench", pushgateway_body(),
                       "text/plain; version=0.0.4", CONNECTIONS, seconds)
    result = {
        "pushgateway_samples_per_s": pgw.requests_per_second * SAMPLES,
        "pushgateway_errors": pgw.errors,
    }
    for mode, workers in (("one_process", 0), ("workers", WORKERS)):
        with collector({"server": {"workers": workers}}) as (url, _):
            ours = wrk_post(f"{url}/api/v1/metrics", native_body(), "application/json",
                            CONNECTIONS, seconds)
            result[f"{mode}_lag_s"] = aggregation_lag(url)
        result[f"{mode}_samples_per_s"] = ours.requests_per_second * SAMPLES
        result[f"{mode}_errors"] = ours.errors
    result["ratio"] = result["workers_samples_per_s"] / result["pushgateway_samples_per_s"]
    return result


def report(result: dict[str, float]) -> str:
    rows = [
        (f"flext-observability, {WORKERS} workers", "workers"),
        ("flext-observability, one process", "one_process"),
    ]
    lines = [f"native ingest ({SAMPLES}-sample batches, {CONNECTIONS} connections, disk queue):"]
    for label, mode in rows:
        lines.append(
            f"  {label:<34} {result[f'{mode}_samples_per_s']:>10,.0f} samples/s"
            f"  (non-2xx {result[f'{mode}_errors']}; all in /metrics"
            f" {result[f'{mode}_lag_s']:.1f}s after the load)"
        )
    lines.append(
        f"  {'pushgateway':<34} {result['pushgateway_samples_per_s']:>10,.0f} samples/s"
        f"  (non-2xx {result['pushgateway_errors']})"
    )
    lines.append(f"  {f'ratio ({WORKERS} workers / pushgateway)':<34} {result['ratio']:>10.2f}"
                 "  (target >= 1.0)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
