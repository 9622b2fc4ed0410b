"""`python -m bench otelcol`: our collector beside the OpenTelemetry Collector, one run, same loads.

Each collector takes OTLP/HTTP protobuf spans and forwards them over OTLP/gRPC (gzip, the
default of both) to the same sink in this process (the test suite's OTLP receiver, which counts
what it gets). otelcol (.peers/bin/otelcol, built by `make peers`) runs the usual pipeline,
otlp receiver -> batch processor -> otlp exporter, three times: with the exporter's in-memory
sending queue (its default), with the queue in file_storage (persistent, like our disk queue;
its `fsync` is off by default) and in file_storage with `fsync: true`. Ours runs twice: with
its defaults (an fsync a commit: the durability of file_storage with `fsync: true`) and with
`queue.fsync: false` (that of file_storage's default).

(a) steady: 10,000 spans/s in batches of 100 for the window; CPU (share of one core) and mean
    RSS of the collector's processes (all of them: the process and its children);
(b) peak: 512-span batches over 8 keep-alive connections (wrk): accepted (2xx) spans/s;
(c) gRPC peak: the same batches as OTLP/gRPC calls, 8 at a time (`bench.grpc_load`).
After each load the sink must have every accepted span: delivered / accepted is printed (for
the HTTP peak it can pass 100%: wrk does not count the requests in flight when it stops),
and a run that lost one is flagged. Each figure is taken `--runs` times (3), the five
collectors one after the other in each round; the median and the spread are printed.
All on one 2-core machine: the load generators, the collector and the sink share its cores.
"""

from __future__ import annotations

import contextlib
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

from bench import common
from bench.common import collector, cpu_seconds, process_tree, rss_mib, spread, wrk_post
from bench.grpc_load import grpc_post
from bench.otlp_ingest import traces_body

STEADY_RATE, STEADY_BATCH = 10_000, 100
PEAK_BATCH, PEAK_CONNECTIONS = 512, 8
PROTOBUF = "application/x-protobuf"
BIG_QUEUE = {"max_items": 500_000_000, "max_bytes": 50 * 1024**3}



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
    pids = process_tree(pid)

    def sample() -> None:
        while not stop.wait(0.5):
            rss.append(rss_mib(pids))

    sampler = threading.Thread(target=sample, daemon=True)
    failures = sent = 0
    with httpx.Client(headers={"Content-Type": PROTOBUF}, trust_env=False) as client:
        warm = sink.span_count
        for body in bodies[:3]:  # warm-up, not measured
            client.post(f"{url}/v1/traces", content=body)
        before = _wait_delivered(sink, warm + 3 * STEADY_BATCH)
        cpu_start, started = cpu_seconds(pids), time.monotonic()
        sampler.start()
        next_send = started
        while time.monotonic() - started < seconds:
            answer = client.post(f"{url}/v1/traces", content=bodies[sent % len(bodies)])
            failures += answer.status_code != 200
            sent += answer.status_code == 200
            next_send += interval
            time.sleep(max(0.0, next_send - time.monotonic()))
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(pids) - cpu_start
    stop.set()
    sampler.join()
    delivered = _wait_delivered(sink, before + sent * STEADY_BATCH) - before
    return {
        "steady_spans_per_s": sent * STEADY_BATCH / elapsed,
        "steady_cpu_percent": 100 * cpu / elapsed,
        "steady_rss_mib": sum(rss) / len(rss) if rss else rss_mib(pids),
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


def grpc_peak(target: str, sink: OtlpSink, seconds: int) -> dict[str, float]:
    """The peak load as OTLP/gRPC calls to `target` (host:port)."""
    before = sink.span_count
    load = grpc_post(target, traces_body(PEAK_BATCH), PEAK_CONNECTIONS, seconds)
    accepted = load.ok * PEAK_BATCH
    # The warm-up call's batch is delivered too.
    delivered = _wait_delivered(sink, before + accepted + PEAK_BATCH, timeout=120) - before
    return {"grpc_spans_per_s": accepted / load.seconds, "grpc_errors": load.errors,
            "grpc_accepted": accepted + PEAK_BATCH, "grpc_delivered": delivered}


@contextlib.contextmanager
def otelcol(sink: OtlpSink, storage: dict[str, Any] | None) -> Iterator[tuple[str, str, int]]:
    """otelcol: otlp (HTTP, gRPC) -> batch -> otlp (gRPC) to the sink, the sending queue in
    memory or in file_storage (`storage`: its settings but the directory); yields (url,
    gRPC target, pid)."""
    with tempfile.TemporaryDirectory(prefix="flext-bench-otelcol-") as tmp:
        http_port, grpc_port = free_ports(2)
        queue: dict[str, Any] = {"enabled": True, "queue_size": 100_000}
        extensions: dict[str, Any] = {}
        if storage is not None:
            directory = Path(tmp) / "queue"
            directory.mkdir()
            extensions["file_storage"] = {"directory": str(directory), **storage}
            queue["storage"] = "file_storage"
        config = {
            "extensions": extensions,
            "receivers": {"otlp": {"protocols": {
                "http": {"endpoint": f"127.0.0.1:{http_port}"},
                "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
            }}},
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
            yield f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", process.pid
        finally:
            process.stop()


OURS = "flext-observability"
# Ours with `queue.fsync: false`: commits reach the OS, not the disk, before the answer,
# as otelcol's file_storage (its `fsync` defaults to false) writes its queue.
OURS_NO_FSYNC = "flext, queue.fsync false"
MINE = (OURS, OURS_NO_FSYNC)
# otelcol's, by their file_storage settings (None: the queue in memory).
OTELCOLS: dict[str, dict[str, Any] | None] = {
    "otelcol, memory queue": None,
    "otelcol, file_storage": {},
    "otelcol, file_storage fsync": {"fsync": True},
}
SYSTEMS = (*MINE, *OTELCOLS)
Figures = dict[str, list[float]]


@contextlib.contextmanager
def _system(name: str, sink: OtlpSink) -> Iterator[tuple[str, str, int]]:
    """One of SYSTEMS forwarding to `sink`: (url, gRPC target, pid)."""
    if name not in MINE:
        with otelcol(sink, OTELCOLS[name]) as started:
            yield started
        return
    (grpc_port,) = free_ports(1)
    queue = {**BIG_QUEUE, "fsync": name == OURS}
    with collector({"queue": queue, "server": {"grpc_port": grpc_port},
                    "exporters": {"jaeger": {"endpoint": sink.grpc_endpoint}}}) as (url, proc):
        yield url, f"127.0.0.1:{grpc_port}", proc.pid


def run(seconds: int = 10) -> dict[str, Figures]:
    """Each figure of each system, once a round, `common.RUNS` rounds."""
    window = max(seconds, 10)
    result: dict[str, Figures] = {name: {} for name in SYSTEMS}
    sink = OtlpSink(keep=False).start()
    try:
        for _ in range(common.RUNS):
            for name in SYSTEMS:
                with _system(name, sink) as (url, target, pid):
                    figures = (steady(url, pid, sink, window) | peak(url, sink, window)
                               | grpc_peak(target, sink, window))
                for key, value in figures.items():
                    result[name].setdefault(key, []).append(value)
    finally:
        sink.stop()
    return result


def _delivery(figures: Figures, load: str) -> str:
    """Delivered / accepted over the runs; LOST when a run delivered less than it accepted.
    (More is no loss: the requests wrk had in flight when it stopped are delivered too.)"""
    pairs = list(zip(figures[f"{load}_accepted"], figures[f"{load}_delivered"], strict=True))
    ratio = sum(d for _, d in pairs) / max(sum(a for a, _ in pairs), 1)
    return f"{ratio:.1%}" + (" LOST" if any(d < a for a, d in pairs) else "")


def report(result: dict[str, Figures]) -> str:
    median = common.median
    lines = [
        "OTLP spans in, OTLP/gRPC out to one sink: flext-observability beside otelcol",
        f"  steady {STEADY_RATE:,} spans/s in batches of {STEADY_BATCH} (OTLP/HTTP): cpu % of "
        "one core, rss MiB, delivered/accepted",
    ]
    for name, figures in result.items():
        lines.append(f"    {name:28} cpu {spread(figures['steady_cpu_percent'], '.1f'):18}"
                     f" rss {spread(figures['steady_rss_mib'], '.0f'):14}"
                     f" delivered {_delivery(figures, 'steady')}")
    for load, title in (("peak", "peak OTLP/HTTP (wrk)"), ("grpc", "peak OTLP/gRPC")):
        lines.append(f"  {title}, {PEAK_BATCH}-span batches, {PEAK_CONNECTIONS} at a time: "
                     "spans/s (2xx / OK only), failed requests, delivered/accepted")
        for name, figures in result.items():
            lines.append(f"    {name:28} {spread(figures[f'{load}_spans_per_s']):30}"
                         f" failed {sum(figures[f'{load}_errors']):.0f}"
                         f"  delivered {_delivery(figures, load)}")
    for mine in MINE:
        for name, figures in result.items():
            if name in MINE:
                continue
            ratios = ", ".join(
                f"{label} {median(result[mine][key]) / median(figures[key]):.2f}x"
                for label, key in (("cpu", "steady_cpu_percent"), ("rss", "steady_rss_mib"),
                                   ("http peak", "peak_spans_per_s"),
                                   ("grpc peak", "grpc_spans_per_s"))
            )
            lines.append(f"  {mine} / {name} (medians): {ratios}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
