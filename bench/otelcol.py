"""`python -m bench otelcol`: our collector beside the OpenTelemetry Collector, one run, same loads.

Each collector takes OTLP/HTTP protobuf spans and forwards them over OTLP/gRPC (gzip, the
default of both) to the same sink in this process (the test suite's OTLP receiver, which counts
what it gets). otelcol (.peers/bin/otelcol, built by `make peers`) runs the usual pipeline,
otlp receiver -> batch processor -> otlp exporter, twice: with the exporter's in-memory sending
queue (its default) and with the queue in file_storage (persistent, like our disk queue).

(a) steady: 10,000 spans/s in batches of 100 for the window; CPU (share of one core) and mean
    RSS of the collector's processes (all of them: the process and its children);
(b) peak: 512-span batches over 8 keep-alive connections (wrk): accepted spans/s.
After each load the sink must have every accepted span: delivered / accepted is printed (for
the peak it can pass 100%: wrk does not count the requests in flight when it stops).
All on one 2-core machine: the load generator, the collector and the sink share its cores.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tests.helpers.otlp_sink import OtlpSink
from tests.helpers.peers import Otelcol
from tests.helpers.procs import free_ports

from bench.common import collector, wrk_post
from bench.otlp_ingest import traces_body

STEADY_RATE, STEADY_BATCH = 10_000, 100
PEAK_BATCH, PEAK_CONNECTIONS = 512, 8
PROTOBUF = "application/x-protobuf"
BIG_QUEUE = {"max_items": 500_000_000, "max_bytes": 50 * 1024**3}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 1024**2


def _tree(pid: int) -> list[int]:
    """``pid`` and every descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return total * PAGE_MIB


def _wait_delivered(sink: OtlpSink, target: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while sink.span_count < target and time.monotonic() < deadline:
        time.sleep(0.1)
    return sink.span_count


def steady(url: str, pid: int, sink: OtlpSink, seconds: float) -> dict[str, float]:
    """``STEADY_RATE`` spans/s in batches of ``STEADY_BATCH`` to ``url``/v1/traces."""
    bodies = [traces_body(STEADY_BATCH, seed) for seed in range(1, 11)]
    interval = STEADY_BATCH / STEADY_RATE
    rss: list[float] = []
    stop = threading.Event()
    pids = _tree(pid)

    def sample() -> None:
        while not stop.wait(0.5):
            rss.append(_rss_mib(pids))

    sampler = threading.Thread(target=sample, daemon=True)
    failures = sent = 0
    with httpx.Client(headers={"Content-Type": PROTOBUF}, trust_env=False) as client:
        warm = sink.span_count
        for body in bodies[:3]:  # warm-up, not measured
            client.post(f"{url}/v1/traces", content=body)
        before = _wait_delivered(sink, warm + 3 * STEADY_BATCH)
        cpu_start, started = _cpu_seconds(pids), time.monotonic()
        sampler.start()
        next_send = started
        while time.monotonic() - started < seconds:
            answer = client.post(f"{url}/v1/traces", content=bodies[sent % len(bodies)])
            failures += answer.status_code != 200
            sent += answer.status_code == 200
            next_send += interval
            time.sleep(max(0.0, next_send - time.monotonic()))
        elapsed = time.monotonic() - started
        cpu = _cpu_seconds(pids) - cpu_start
    stop.set()
    sampler.join()
    delivered = _wait_delivered(sink, before + sent * STEADY_BATCH) - before
    return {
        "steady_spans_per_s": sent * STEADY_BATCH / elapsed,
        "steady_cpu_percent": 100 * cpu / elapsed,
        "steady_rss_mib": sum(rss) / len(rss) if rss else _rss_mib(pids),
        "steady_failures": failures,
        "steady_accepted": sent * STEADY_BATCH,
        "steady_delivered": delivered,
    }


def peak(url: str, sink: OtlpSink, seconds: int) -> dict[str, float]:
    before = sink.span_count
    load = wrk_post(f"{url}/v1/traces", traces_body(PEAK_BATCH), PROTOBUF, PEAK_CONNECTIONS,
                    seconds)
    accepted = (load.requests - load.errors) * PEAK_BATCH
    delivered = _wait_delivered(sink, before + accepted, timeout=120) - before
    return {"peak_spans_per_s": load.requests_per_second * PEAK_BATCH,
            "peak_errors": load.errors, "peak_accepted": accepted, "peak_delivered": delivered}


@contextlib.contextmanager
def otelcol(sink: OtlpSink, persistent: bool) -> Iterator[tuple[str, int]]:
    """otelcol: otlp (HTTP) -> batch -> otlp (gRPC) to the sink; yields (url, pid)."""
    with tempfile.TemporaryDirectory(prefix="flext-bench-otelcol-") as tmp:
        (http_port,) = free_ports(1)
        queue: dict[str, Any] = {"enabled": True, "queue_size": 100_000}
        extensions: dict[str, Any] = {}
        if persistent:
            storage = Path(tmp) / "queue"
            storage.mkdir()
            extensions["file_storage"] = {"directory": str(storage)}
            queue["storage"] = "file_storage"
        config = {
            "extensions": extensions,
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
            "processors": {"batch": {}},
            "exporters": {"otlp_grpc": {
                "endpoint": sink.grpc_endpoint.removeprefix("http://"),
                "tls": {"insecure": True},
                "sending_queue": queue,
            }},
            "service": {
                "extensions": list(extensions),
                "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                         "exporters": ["otlp_grpc"]}},
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
            },
        }
        process = Otelcol(Path(tmp), config).start()
        try:
            assert process.pid is not None
            yield f"http://127.0.0.1:{http_port}", process.pid
        finally:
            process.stop()


def run(seconds: int = 10) -> dict[str, dict[str, float]]:
    window = max(seconds, 10)
    result: dict[str, dict[str, float]] = {}
    sink = OtlpSink(keep=False).start()
    try:
        with collector({"queue": BIG_QUEUE,
                        "exporters": {"jaeger": {"endpoint": sink.grpc_endpoint}}}) as (url, proc):
            result["flext-observability"] = steady(url, proc.pid, sink, window)
            result["flext-observability"] |= peak(url, sink, window)
        for name, persistent in (("otelcol, memory queue", False), ("otelcol, file_storage", True)):
            with otelcol(sink, persistent) as (url, pid):
                result[name] = steady(url, pid, sink, window) | peak(url, sink, window)
    finally:
        sink.stop()
    return result


def report(result: dict[str, dict[str, float]]) -> str:
    ours = result["flext-observability"]
    lines = [
        "OTLP/HTTP spans in, OTLP/gRPC out to one sink: flext-observability beside otelcol",
        f"  {'':24}{'cpu %':>8}{'rss MiB':>9}{'delivered':>11}"
        f"{'peak spans/s':>14}{'non-2xx':>9}{'delivered':>11}",
    ]
    for name, figures in result.items():
        lines.append(
            f"  {name:24}{figures['steady_cpu_percent']:8.1f}{figures['steady_rss_mib']:9.1f}"
            f"{figures['steady_delivered'] / max(figures['steady_accepted'], 1):11.1%}"
            f"{figures['peak_spans_per_s']:14,.0f}{figures['peak_errors']:9.0f}"
            f"{figures['peak_delivered'] / max(figures['peak_accepted'], 1):11.1%}")
    lines.append(f"  (steady: {STEADY_RATE:,} spans/s in batches of {STEADY_BATCH}; peak: "
                 f"{PEAK_BATCH}-span batches, {PEAK_CONNECTIONS} connections)")
    for name, figures in result.items():
        if name == "flext-observability":
            continue
        cpu = ours["steady_cpu_percent"] / figures["steady_cpu_percent"]
        lines.append(
            f"  ours / {name}: cpu {cpu:.2f}x"
            f", rss {ours['steady_rss_mib'] / figures['steady_rss_mib']:.2f}x"
            f", peak {ours['peak_spans_per_s'] / figures['peak_spans_per_s']:.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
