"""The cost of remote-writing the held series to a real Prometheus.

100,000 series (10 counters of 10,000 series, 5 services) are posted; the collector writes
them every 15 s to Debian's Prometheus (`--web.enable-remote-write-receiver`), 2,000 samples
per request, 5 requests at once. Figures: the time until Prometheus' query API counts
every series, the duration of a round (read, encode, send, as /readyz reports it), and
the collector's CPU (share of one core) over whole intervals: remote write plus idling.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.common import collector, cpu_seconds, free_port, process
from bench.restart import BATCH, SERIES, bodies

INTERVAL = 15.0


@contextlib.contextmanager
def prometheus() -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed (make system-deps)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="flext-bench-prom-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text("global: {}\n")
        args = [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp}/tsdb",
                f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver"]
        with process(args, f"{url}/-/ready", Path(tmp) / "prometheus.log"):
            yield url


def count_in(prometheus_url: str) -> int:
    answer = httpx.get(f"{prometheus_url}/api/v1/query", timeout=30,
                       params={"query": 'count({__name__=~"restart_m.*"})'}).json()
    result = answer["data"]["result"]
    return int(result[0]["value"][1]) if result else 0


def last_round(url: str) -> dict[str, Any]:
    state = httpx.get(f"{url}/readyz", timeout=30).json()["exporters"]["prometheus_remote_write"]
    return dict(state["last_round"])


def run(seconds: int = 10) -> dict[str, float]:
    with prometheus() as prometheus_url, collector({"exporters": {
        "prometheus_remote_write": {"url": f"{prometheus_url}/api/v1/write",
                                    "interval": INTERVAL},
        "prometheus": {"max_series_per_service": SERIES},
    }}) as (url, proc):
        for body in bodies():
            answer = httpx.post(f"{url}/api/v1/metrics", content=body, timeout=60,
                                headers={"Content-Type": "application/json"})
            answer.raise_for_status()
        posted = time.monotonic()
        while count_in(prometheus_url) < SERIES:
            if time.monotonic() - posted > 120:
                raise RuntimeError("Prometheus did not get every series within 120 s")
            time.sleep(0.5)
        arrived = time.monotonic() - posted
        # Whole intervals, at least two, the first started after every series arrived.
        intervals = max(2, round(seconds / INTERVAL))
        before = cpu_seconds([proc.pid])
        time.sleep(intervals * INTERVAL)
        cpu = (cpu_seconds([proc.pid]) - before) / (intervals * INTERVAL)
        round_ = last_round(url)
    return {
        "series": SERIES,
        "seconds_until_all_in_prometheus": arrived,
        "round_seconds": round_["seconds"],
        "round_samples": round_["samples"],
        "round_requests": round_["requests"],
        "cpu_share": cpu,
        "posted_batches": SERIES // BATCH,
    }


def report(result: dict[str, float]) -> str:
    return (
        f"remote write, {result['series']:,} series every {INTERVAL:.0f}s to Prometheus: "
        f"all in Prometheus {result['seconds_until_all_in_prometheus']:.1f}s after the last "
        f"post; a round {result['round_seconds']:.2f}s ({result['round_samples']:,} samples, "
        f"{result['round_requests']} requests); collector CPU {result['cpu_share']:.1%} of "
        "one core over whole intervals"
    )
