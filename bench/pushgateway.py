"""The push API: the same text-format pushes to the Pushgateway and to the collector.

Groups of 1,000 samples (one counter, 1,000 series), PUT (as `push_to_gateway` does) over
8 keep-alive connections, driven by wrk: to one group, then in turn to 8 groups
(`/metrics/job/bench/instance/<0..7>`). The Pushgateway (Debian's, memory only) checks
each push against its groups before answering; the collector checks it the same way and
answers once the push is durably queued, then applies it to the groups /metrics shows
(the lag is measured).
"""

from __future__ import annotations

import os
import time

import httpx
from tests.helpers.exposition import total

from bench.common import collector, pushgateway, wrk_post

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


def _load(url: str, groups: int, seconds: int) -> tuple[float, float]:
    """(samples/s, non-2xx) of the pushes to `groups` groups."""
    os.environ["BENCH_GROUPS"] = str(groups)
    result = wrk_post(url, body(), CONTENT_TYPE, CONNECTIONS, seconds,
                      script_text=WRK_PUT_GROUPS)
    return result.requests_per_second * SAMPLES, result.errors


def run(seconds: int = 10) -> dict[str, float]:
    result: dict[str, float] = {}
    with pushgateway() as url:
        for groups in GROUP_COUNTS:
            rate, errors = _load(url, groups, seconds)
            result[f"pushgateway_{groups}_samples_per_s"] = rate
            result[f"pushgateway_{groups}_errors"] = errors
        result["pushgateway_groups"] = groups_shown(url)
    with collector() as (url, _):
        for groups in GROUP_COUNTS:
            rate, errors = _load(url, groups, seconds)
            result[f"collector_{groups}_samples_per_s"] = rate
            result[f"collector_{groups}_errors"] = errors
        result["collector_apply_lag_s"] = applied_lag(url)
        result["collector_groups"] = groups_shown(url)
    return result


def report(result: dict[str, float]) -> str:
    lines = [
        f"Push API: PUT of {SAMPLES:,}-sample groups (text format), {CONNECTIONS} connections",
        f"  {'':34}{'Pushgateway':>14}{'flext-observability':>21}{'ratio':>8}",
    ]
    for groups in GROUP_COUNTS:
        theirs = result[f"pushgateway_{groups}_samples_per_s"]
        ours = result[f"collector_{groups}_samples_per_s"]
        lines.append(
            f"  {f'samples/s, {groups} group(s)':34}{theirs:>14,.0f}{ours:>21,.0f}"
            f"{ours / theirs if theirs else 0.0:>8.2f}"
            f"   (non-2xx {result[f'pushgateway_{groups}_errors']:.0f}"
            f" / {result[f'collector_{groups}_errors']:.0f})"
        )
    lines.append(
        f"  groups shown {result['pushgateway_groups']:.0f} / {result['collector_groups']:.0f};"
        f" the collector applied every push {result['collector_apply_lag_s']:.2f}s after the"
        " load (goal: ratio >= 1.0)"
    )
    return "\n".join(lines)
