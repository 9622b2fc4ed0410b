"""Native metric samples/s into the collector vs. the Prometheus Pushgateway, same samples.

Batches of 1,000 counter samples (1,000 distinct series), 8 keep-alive connections, driven
by wrk. The collector answers 202 only after the batch is durably queued (disk queue) and
aggregates every sample into /metrics as it goes; the Pushgateway keeps pushes in memory.
The collector runs in one process (`server.workers: 0`, the default), then with 1 and 2
ingest workers. Each figure is taken `--runs` times, the Pushgateway and each mode of the
collector in turn, and printed as the median with its spread; only 2xx answers count, and
after each load every accepted sample must be on /metrics (each series' counter equal to
the number of requests accepted).
"""

from __future__ import annotations

import time

import httpx
import orjson
from tests.helpers.exposition import total

from bench import common
from bench.common import (
    Figure,
    WrkResult,
    collector,
    cpu_seconds,
    load_average,
    process_tree,
    pushgateway,
    wrk_post,
)

SAMPLES = 1000
CONNECTIONS = 8
MODES = (("one process", 0), ("1 worker", 1), ("2 workers", 2))
BASELINE = "pushgateway"


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


def check_delivered(url: str, load: WrkResult, timeout: float = 10) -> None:
    """Every accepted sample is on /metrics: each of the SAMPLES series counts every
    accepted request (at least those wrk saw answered 2xx, at most what was received).
    Polled: with ingest workers, their received counts reach the collector's /metrics a
    moment after the samples themselves."""
    deadline = time.monotonic() + timeout
    while True:
        text = httpx.get(f"{url}/metrics", timeout=30).text
        received = total(text, "flext_collector_received_items_total", signal="metrics")
        values = [
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("bench_requests_total{")
        ]
        accepted = load.requests - load.errors
        if len(values) == SAMPLES and set(values) == {received / SAMPLES} and (
                values[0] >= accepted):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"not every accepted sample is on /metrics: {len(values)} series, values "
                f"{sorted(set(values))[:3]}, {received:.0f} samples received, {accepted} "
                "requests answered 2xx"
            )
        time.sleep(0.1)


def run(seconds: int = 10) -> dict[str, object]:
    figures = {name: Figure() for name in (BASELINE, *(mode for mode, _ in MODES))}
    # CPU of the collector's processes per request: what the load on the machine moves least.
    cpu = {mode: Figure() for mode, _ in MODES}
    errors = dict.fromkeys(figures, 0)
    lags: list[float] = []
    for _ in range(common.RUNS):
        with pushgateway() as url:
            pgw = wrk_post(f"{url}/metrics/job/bench", pushgateway_body(),
                           "text/plain; version=0.0.4", CONNECTIONS, seconds)
        figures[BASELINE].values.append(pgw.requests_per_second * SAMPLES)
        errors[BASELINE] += pgw.errors
        for mode, workers in MODES:
            with collector({"server": {"workers": workers}}) as (url, proc):
                pids = process_tree(proc.pid)
                used = cpu_seconds(pids)
                ours = wrk_post(f"{url}/api/v1/metrics", native_body(), "application/json",
                                CONNECTIONS, seconds)
                used = cpu_seconds(pids) - used
                cpu[mode].values.append(1000 * used / max(ours.requests, 1))
                lags.append(aggregation_lag(url))
                check_delivered(url, ours)
            figures[mode].values.append(ours.requests_per_second * SAMPLES)
            errors[mode] += ours.errors
    return {"figures": figures, "errors": errors, "cpu": cpu, "lag": max(lags),
            "load": load_average()}


def report(result: dict[str, object]) -> str:
    figures: dict[str, Figure] = result["figures"]  # type: ignore[assignment]
    errors: dict[str, int] = result["errors"]  # type: ignore[assignment]
    cpu: dict[str, Figure] = result["cpu"]  # type: ignore[assignment]
    baseline = figures[BASELINE]
    lines = [
        f"native ingest ({SAMPLES}-sample batches, {CONNECTIONS} connections, disk queue),"
        f" samples/s, median of {common.RUNS} (min-max, spread); {result['load']} at the end:"
    ]
    previous: Figure | None = None
    for mode, _ in MODES:
        figure = figures[mode]
        scaling = f", x{figure.ratio(previous):.2f} the previous" if previous else ""
        lines.append(
            f"  {f'flext-observability, {mode}':<34} {figure.text()}  ratio"
            f" {figure.ratio(baseline):.2f}{scaling}  (non-2xx {errors[mode]};"
            f" CPU {cpu[mode].median:.2f} ms per request)"
        )
        previous = figure
    lines.append(f"  {'pushgateway':<34} {baseline.text()}  (non-2xx {errors[BASELINE]})")
    lines.append(
        f"  every accepted sample was on /metrics at most {result['lag']:.1f}s after each"
        " load; target: one process >= 1.0x the pushgateway"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
