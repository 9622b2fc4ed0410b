"""Soak: the daemon at a steady rate for SOAK_MINUTES (default 30), its span downstream
going down and up again every SOAK_FLAP_SECONDS (default 180), with SOAK_WORKERS ingest
workers (default 0: one process). Not part of CI: `make soak`.

Native counters (value 1) go to /api/v1/metrics and OTLP/HTTP protobuf spans to
/v1/traces, each on its own paced thread (SOAK_METRICS_PER_S items/s, default 2000, in
batches of 100; SOAK_SPANS_PER_S spans/s, default 1000, in batches of 100). The span
exporter sends to a real OTLP/gRPC sink (tests/helpers/otlp_sink.py) that is stopped and
started on a schedule. Every minute a line shows RSS, open file descriptors, what was
accepted and delivered, and the queue; at the end the sink is up, the queue drains, and
the report compares accepted with delivered (counter sums on /metrics; spans at the sink),
RSS at start, end and max, and file descriptors at start and end (of the daemon's
processes together). The event loop's task
count is not observable from outside, so it is not reported. Exit status 1 if anything
accepted was not delivered.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from tests.helpers.exposition import total
from tests.helpers.otlp_sink import OtlpSink

from bench.common import collector

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
FLAP_SECONDS = float(os.environ.get("SOAK_FLAP_SECONDS", "180"))
METRICS_PER_S = float(os.environ.get("SOAK_METRICS_PER_S", "2000"))
SPANS_PER_S = float(os.environ.get("SOAK_SPANS_PER_S", "1000"))
WORKERS = int(os.environ.get("SOAK_WORKERS", "0"))
REPORT_SECONDS = 60.0
SAMPLE_SECONDS = 5.0
BATCH = 100
TIMEOUT = 10.0
DRAIN_SECONDS = 300.0
QUEUED = "flext_collector_queue_items"


def tree(pid: int) -> list[int]:
    """The daemon and its processes (ingest workers, multiprocessing's resource tracker)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [pid, *(p for child in children.read().split() for p in tree(int(child)))]
    except FileNotFoundError:
        return []


def rss_mib(pid: int) -> float:
    """Resident memory of the daemon's processes together."""
    total = 0
    for each in tree(pid):
        with open(f"/proc/{each}/statm") as statm:
            total += int(statm.read().split()[1])
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds(pid: int) -> int:
    return sum(len(os.listdir(f"/proc/{each}/fd")) for each in tree(pid))


@dataclass
class Counts:
    accepted_items: int = 0
    accepted_spans: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refusal(self, what: str) -> None:
        with self.lock:
            self.refused[what] = self.refused.get(what, 0) + 1


def paced(per_second: float, stop: threading.Event):
    """Yield every BATCH / per_second seconds until `stop`; late ticks are not made up."""
    interval = BATCH / per_second
    tick = time.monotonic()
    while not stop.is_set():
        yield
        tick = max(tick + interval, time.monotonic())
        stop.wait(max(0.0, tick - time.monotonic()))


def send_metrics(url: str, counts: Counts, stop: threading.Event) -> None:
    body = orjson.dumps([
        {"name": "soak_items", "type": "counter", "value": 1, "service": "soak",
         "labels": {"path": f"/p{i % 10}"}}
        for i in range(BATCH)
    ])
    with httpx.Client(timeout=TIMEOUT, trust_env=False) as client:
        for _ in paced(METRICS_PER_S, stop):
            try:
                answer = client.post(f"{url}/api/v1/metrics", content=body,
                                     headers={"Content-Type": "application/json"})
            except httpx.HTTPError as exc:
                counts.refusal(f"metrics {type(exc).__name__}")
                continue
            if answer.status_code == 202:
                with counts.lock:
                    counts.accepted_items += BATCH
            else:
                counts.refusal(f"metrics {answer.status_code}")


def spans_body(batch: int) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add()
    scope.resource.attributes.add(key="service.name").value.string_value = "soak"
    spans = scope.scope_spans.add().spans
    now = time.time_ns()
    for i in range(BATCH):
        spans.add(trace_id=(batch + 1).to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"),
                  name="soak", start_time_unix_nano=now, end_time_unix_nano=now + 1000)
    return request.SerializeToString()


def send_spans(url: str, counts: Counts, stop: threading.Event) -> None:
    with httpx.Client(timeout=TIMEOUT, trust_env=False) as client:
        for batch, _ in enumerate(paced(SPANS_PER_S, stop)):
            try:
                answer = client.post(f"{url}/v1/traces", content=spans_body(batch),
                                     headers={"Content-Type": "application/x-protobuf"})
            except httpx.HTTPError as exc:
                counts.refusal(f"spans {type(exc).__name__}")
                continue
            if answer.status_code == 200:
                with counts.lock:
                    counts.accepted_spans += BATCH
            else:
                counts.refusal(f"spans {answer.status_code}")


def run() -> int:
    sink = OtlpSink(keep=False).start()
    sink_up = True
    config = {"server": {"workers": WORKERS},
              "exporters": {"jaeger": {"endpoint": sink.grpc_endpoint}}}
    try:
        with collector(config) as (url, proc):
            pid = proc.pid
            start_rss, start_fds = rss_mib(pid), open_fds(pid)
            max_rss = start_rss
            counts, stop = Counts(), threading.Event()
            senders = [threading.Thread(target=send_metrics, args=(url, counts, stop)),
                       threading.Thread(target=send_spans, args=(url, counts, stop))]
            for sender in senders:
                sender.start()
            print(f"soak: {MINUTES:g} min, {METRICS_PER_S:g} metric items/s and "
                  f"{SPANS_PER_S:g} spans/s; the span sink goes down and up every "
                  f"{FLAP_SECONDS:g}s", flush=True)
            print(f"{'min':>5} {'RSS MiB':>8} {'fds':>5} {'items acc':>10} {'delivered':>10} "
                  f"{'spans acc':>10} {'at sink':>10} {'queued':>8}  sink", flush=True)
            started = time.monotonic()
            deadline = started + MINUTES * 60
            next_flap = started + FLAP_SECONDS
            next_report = started
            while (now := time.monotonic()) < deadline:
                if now >= next_flap:
                    next_flap += FLAP_SECONDS
                    if sink_up:
                        sink.stop()
                    else:
                        sink.start()
                    sink_up = not sink_up
                max_rss = max(max_rss, rss_mib(pid))
                if now >= next_report:
                    next_report += REPORT_SECONDS
                    text = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text
                    print(f"{(now - started) / 60:>5.1f} {rss_mib(pid):>8.1f} "
                          f"{open_fds(pid):>5} {counts.accepted_items:>10} "
                          f"{total(text, 'soak_items_total'):>10.0f} "
                          f"{counts.accepted_spans:>10} {sink.span_count:>10} "
                          f"{total(text, QUEUED):>8.0f}  {'up' if sink_up else 'down'}",
                          flush=True)
                time.sleep(min(SAMPLE_SECONDS, max(0.0, deadline - time.monotonic())))
            stop.set()
            for sender in senders:
                sender.join()
            if not sink_up:
                sink.start()
            drain_deadline = time.monotonic() + DRAIN_SECONDS
            while True:
                text = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text
                if total(text, QUEUED) == 0 or time.monotonic() > drain_deadline:
                    break
                time.sleep(1)
            delivered_items = total(text, "soak_items_total")
            end_rss, end_fds = rss_mib(pid), open_fds(pid)
            max_rss = max(max_rss, end_rss)
    finally:
        sink.stop()
    lost_items = counts.accepted_items - delivered_items
    lost_spans = counts.accepted_spans - sink.span_count
    print(f"metric items: accepted {counts.accepted_items}, delivered {delivered_items:.0f}, "
          f"lost {lost_items:.0f}")
    print(f"spans:        accepted {counts.accepted_spans}, delivered {sink.span_count}, "
          f"lost {lost_spans}")
    print(f"refused or failed requests: {counts.refused or 'none'}")
    print(f"RSS MiB:      start {start_rss:.1f}, end {end_rss:.1f}, max {max_rss:.1f}")
    print(f"open fds:     start {start_fds}, end {end_fds}")
    return 1 if lost_items or lost_spans else 0


if __name__ == "__main__":
    sys.exit(run())
