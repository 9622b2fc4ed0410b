"""Native metric samples/s into the collector vs. the Prometheus Pushgateway, same samples.

Batches of 1,000 counter samples (1,000 distinct series), 8 keep-alive connections, driven
by wrk. The collector answers 202 only after the batch is durably queued (disk queue);
the Pushgateway keeps pushes in memory.
"""

from __future__ import annotations

import orjson

from bench.common import collector, pushgateway, wrk_post

SAMPLES = 1000
CONNECTIONS = 8


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


def run(seconds: int = 10) -> dict[str, float]:
    with pushgateway() as url:
        pgw = wrk_post(f"{url}/metrics/job/bench", pushgateway_body(),
                       "text/plain; version=0.0.4", CONNECTIONS, seconds)
    with collector() as (url, _):
        ours = wrk_post(f"{url}/api/v1/metrics", native_body(), "application/json",
                        CONNECTIONS, seconds)
    result = {
        "collector_samples_per_s": ours.requests_per_second * SAMPLES,
        "collector_errors": ours.errors,
        "pushgateway_samples_per_s": pgw.requests_per_second * SAMPLES,
        "pushgateway_errors": pgw.errors,
    }
    result["ratio"] = result["collector_samples_per_s"] / result["pushgateway_samples_per_s"]
    return result


def report(result: dict[str, float]) -> str:
    return (
        f"native ingest ({SAMPLES}-sample batches, {CONNECTIONS} connections):\n"
        f"  flext-observability  {result['collector_samples_per_s']:>12,.0f} samples/s"
        f"  (non-2xx {result['collector_errors']})\n"
        f"  pushgateway          {result['pushgateway_samples_per_s']:>12,.0f} samples/s"
        f"  (non-2xx {result['pushgateway_errors']})\n"
        f"  ratio                {result['ratio']:>12.2f}  (target >= 1.0)"
    )


if __name__ == "__main__":
    print(report(run()))
