"""The push API: the same text-format pushes to the Pushgateway and to the collector.

Groups of 1,000 samples (one counter, 1,000 series), PUT (as `push_to_gateway` does) over
8 keep-alive connections, driven by wrk: to one group, then in turn to 8 groups
(`/metrics/job/bench/instance/<0..7>`). The Pushgateway (Debian's, memory only) checks
each push against its groups before answering; the collector checks it the same way and
answers once the push is durably queued, then applies it to the groups /metrics shows
(the lag is measured). Each figure is taken `--runs` times, the Pushgateway and the
collector in turn, and printed as the median with its spread; only 2xx answers count,
and after each load every pushed group must be on the collector's /metrics whole.
"""

from __future__ import annotations

import os
import time

import httpx
from tests.helpers.exposition import total

from bench import common
from bench.common import Figure, collector, load_average, pushgateway, wrk_post

SAMPLES = 1000
CONNECTIONS = 8
# Pushes go in turn to this many groups: one (every connection replaces the same group) and
# one per connection (8 jobs pushing at once).
GROUP_COUNTS = (1, 8)

WRK_PUT_GROUPS = """
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local body = f:read("*a")
f:close()
local headers = {["Content-Type"] = os.getenv("BENCH_CTYPE")}
local groups = tonumber(os.getenv("BENCH_GROUPS"))
local n = 0
request = function()
  n = n + 1
  return wrk.format("PUT", "/metrics/job/bench/instance/" .. (n % groups), headers, body)
end
"""


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def body() -> bytes:
    lines = ["# HELP bench_requests_total Requests.", "# TYPE bench_requests_total counter"]
    lines += [f'bench_requests_total{{path="/p{i}"}} {i}' for i in range(SAMPLES)]
    return ("\n".join(lines) + "\n").encode()


def applied_lag(url: str, timeout: float = 60) -> float:
    """Seconds after the load stopped until every accepted push was applied."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        received = total(text, "flext_collector_received_items_total", signal="metrics",
                         receiver="pushgateway")
        exported = total(text, "flext_collector_exported_items_total", exporter="prometheus")
        if received and exported >= received:
            return time.monotonic() - start
        time.sleep(0.05)
    raise RuntimeError(f"pushes still not applied {timeout}s after the load stopped")


def groups_shown(url: str) -> int:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(1 for line in text.splitlines() if line.startswith("push_time_seconds{"))


def check_groups(url: str, groups: int) -> None:
    """Every group pushed to is on /metrics with its SAMPLES series and their values."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for group in range(groups):
        values = sorted(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("bench_requests_total{") and f'instance="{group}"' in line
        )
        if values != [float(i) for i in range(SAMPLES)]:
            raise RuntimeError(f"group instance={group} is not whole on /metrics: "
                               f"{len(values)} series")


def _load(url: str, groups: int, seconds: int) -> tuple[float, float]:
    """(samples/s, non-2xx) of the pushes to `groups` groups."""
    os.environ["BENCH_GROUPS"] = str(groups)
    result = wrk_post(url, body(), CONTENT_TYPE, CONNECTIONS, seconds,
                      script_text=WRK_PUT_GROUPS)
    return result.requests_per_second * SAMPLES, result.errors


def run(seconds: int = 10) -> dict[str, object]:
    figures = {f"{who}_{groups}": Figure() for who in ("pushgateway", "collector")
               for groups in GROUP_COUNTS}
    errors = dict.fromkeys(figures, 0.0)
    lags: list[float] = []
    for _ in range(common.RUNS):
        with pushgateway() as url:
            for groups in GROUP_COUNTS:
                rate, failed = _load(url, groups, seconds)
                figures[f"pushgateway_{groups}"].values.append(rate)
                errors[f"pushgateway_{groups}"] += failed
        with collector() as (url, _):
            for groups in GROUP_COUNTS:
                rate, failed = _load(url, groups, seconds)
                lags.append(applied_lag(url))
                check_groups(url, groups)
                figures[f"collector_{groups}"].values.append(rate)
                errors[f"collector_{groups}"] += failed
            shown = groups_shown(url)
    return {"figures": figures, "errors": errors, "lag": max(lags), "groups": shown,
            "load": load_average()}


def report(result: dict[str, object]) -> str:
    figures: dict[str, Figure] = result["figures"]  # type: ignore[assignment]
    errors: dict[str, float] = result["errors"]  # type: ignore[assignment]
    lines = [
        f"Push API: PUT of {SAMPLES:,}-sample groups (text format), {CONNECTIONS} connections,"
        f" samples/s, median of {common.RUNS} (min-max, spread); {result['load']} at the end:",
    ]
    for groups in GROUP_COUNTS:
        theirs, ours = figures[f"pushgateway_{groups}"], figures[f"collector_{groups}"]
        lines.append(f"  {groups} group(s): ratio {ours.ratio(theirs):.2f}"
                     f"   (non-2xx {errors[f'pushgateway_{groups}']:.0f}"
                     f" / {errors[f'collector_{groups}']:.0f})")
        lines.append(f"    {'Pushgateway':<20} {theirs.text()}")
        lines.append(f"    {'flext-observability':<20} {ours.text()}")
    lines.append(
        f"  every pushed group whole on the collector's /metrics, every push applied at most"
        f" {result['lag']:.2f}s after each load ({result['groups']} groups shown);"
        " goal: ratio >= 1.0"
    )
    return "\n".join(lines)
