"""The push API: the same text-format pushes to the Pushgateway and to the collector.

Groups of 1,000 samples (one counter, 1,000 series), PUT (as `push_to_gateway` does) in
turn to 8 groups (`/metrics/job/bench/instance/<0..7>`) over 8 keep-alive connections,
driven by wrk. The Pushgateway (Debian's, memory only) checks each push against its
groups before answering; the collector checks it the same way and answers once the push
is durably queued, then applies it to the groups /metrics shows (the lag is measured).
"""

from __future__ import annotations

import time

import httpx
from tests.helpers.exposition import total

from bench.common import collector, pushgateway, wrk_post

SAMPLES = 1000
CONNECTIONS = 8
GROUPS = 8

WRK_PUT_GROUPS = f"""
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local body = f:read("*a")
f:close()
local headers = {{["Content-Type"] = os.getenv("BENCH_CTYPE")}}
local n = 0
request = function()
  n = n + 1
  return wrk.format("PUT", "/metrics/job/bench/instance/" .. (n % {GROUPS}), headers, body)
end
"""


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


def run(seconds: int = 10) -> dict[str, float]:
    payload, content_type = body(), "text/plain; version=0.0.4; charset=utf-8"
    with pushgateway() as url:
        pgw = wrk_post(url, payload, content_type, CONNECTIONS, seconds,
                       script_text=WRK_PUT_GROUPS)
        pgw_groups = groups_shown(url)
    with collector() as (url, _):
        ours = wrk_post(url, payload, content_type, CONNECTIONS, seconds,
                        script_text=WRK_PUT_GROUPS)
        lag = applied_lag(url)
        our_groups = groups_shown(url)
    pgw_rate = pgw.requests_per_second * SAMPLES
    our_rate = ours.requests_per_second * SAMPLES
    return {
        "pushgateway_samples_per_s": pgw_rate,
        "pushgateway_errors": pgw.errors,
        "pushgateway_groups": pgw_groups,
        "collector_samples_per_s": our_rate,
        "collector_errors": ours.errors,
        "collector_groups": our_groups,
        "collector_apply_lag_s": lag,
        "ratio": our_rate / pgw_rate if pgw_rate else 0.0,
    }


def report(result: dict[str, float]) -> str:
    return "\n".join([
        f"Push API: PUT of {SAMPLES:,}-sample groups to {GROUPS} groups, "
        f"{CONNECTIONS} connections",
        f"  Pushgateway          {result['pushgateway_samples_per_s']:>12,.0f} samples/s"
        f"  (non-2xx {result['pushgateway_errors']:.0f},"
        f" groups {result['pushgateway_groups']:.0f})",
        f"  flext-observability  {result['collector_samples_per_s']:>12,.0f} samples/s"
        f"  (non-2xx {result['collector_errors']:.0f}, groups {result['collector_groups']:.0f},"
        f" applied {result['collector_apply_lag_s']:.2f}s after the load)",
        f"  ratio collector / Pushgateway: {result['ratio']:.2f} (goal >= 1.0)",
    ])
