"""End-to-end spans/s: OTLP/HTTP protobuf in, durable queue, OTLP/gRPC out to a receiver.

Batches of 512 spans (built with opentelemetry-proto), 8 keep-alive connections (wrk).
The same load runs twice: with no span exporter (ingest only: the spans stay queued) and
with `exporters.jaeger` pointed at an OTLP/gRPC sink in this process (the test suite's
real OTLP receiver, counting what it is sent), once with gzip (the default) and once
uncompressed. The delivered figure is what the sink received per second while the load
ran; after it, every span accepted (2xx) must reach the sink (LOST is printed if not).
A third time the exporter sends OTLP/HTTP with gzip to the sink's HTTP port: there the
body is gzipped at level 1 by zlib, where gRPC's own gzip runs zlib's default level 6, about
5x the CPU. The gap to ingest-only is the cost of the durable queue's reads and acks, of
the fan-out and of compression. Each figure is taken `--runs` times (median, min-max). All
on one machine: wrk, the collector and the sink share its cores.
"""

from __future__ import annotations

import time

from tests.helpers.otlp_sink import OtlpSink

from bench import common
from bench.common import collector, spread, wrk_post
from bench.otlp_ingest import traces_body

SPANS = 512
CONNECTIONS = 8
PROTOBUF = "application/x-protobuf"
# Room for every span of the run: ingest-only leaves them all in the queue.
# Held with no exporter (the ingest-only run), where they would be refused by default.
BIG_QUEUE = {"max_items": 500_000_000, "max_bytes": 50 * 1024**3, "hold_unexported": True}


# How the Jaeger exporter sends: (protocol, compression) -> the figures' name.
EXPORTS = {
    ("grpc", "gzip"): "gzip", ("grpc", "none"): "none", ("http/protobuf", "gzip"): "http_gzip",
}


def _delivered(body: bytes, seconds: int, sink: OtlpSink, protocol: str,
               compression: str) -> dict[str, float]:
    """Load with the exporter on: spans/s the sink received meanwhile, non-2xx answers, and
    whether every accepted span reached the sink afterwards."""
    endpoint = sink.grpc_endpoint if protocol == "grpc" else sink.http_endpoint
    exporter = {"endpoint": endpoint, "protocol": protocol, "compression": compression}
    name = EXPORTS[protocol, compression]
    with collector({"queue": BIG_QUEUE, "exporters": {"jaeger": exporter}}) as (url, _):
        started, before = time.monotonic(), sink.span_count
        loaded = wrk_post(f"{url}/v1/traces", body, PROTOBUF, CONNECTIONS, seconds)
        rate = (sink.span_count - before) / (time.monotonic() - started)
        accepted = (loaded.requests - loaded.errors) * SPANS
        deadline = time.monotonic() + 120
        while sink.span_count - before < accepted and time.monotonic() < deadline:
            time.sleep(0.1)
        lost = max(0, accepted - (sink.span_count - before))
    return {f"delivered_{name}_spans_per_s": rate,
            f"delivered_{name}_errors": loaded.errors,
            f"delivered_{name}_lost": lost}


def run(seconds: int = 10) -> dict[str, list[float]]:
    body = traces_body(SPANS)
    result: dict[str, list[float]] = {}

    def keep(figures: dict[str, float]) -> None:
        for key, value in figures.items():
            result.setdefault(key, []).append(value)

    sink = OtlpSink(keep=False).start()
    try:
        for _ in range(common.RUNS):
            with collector({"queue": BIG_QUEUE}) as (url, _):
                ingest = wrk_post(f"{url}/v1/traces", body, PROTOBUF, CONNECTIONS, seconds)
            keep({"ingest_only_spans_per_s": ingest.requests_per_second * SPANS,
                  "ingest_only_errors": ingest.errors})
            for protocol, compression in EXPORTS:
                keep(_delivered(body, seconds, sink, protocol, compression))
    finally:
        sink.stop()
    return result


def report(result: dict[str, list[float]]) -> str:
    def line(label: str, key: str) -> str:
        lost = sum(result.get(f"{key}_lost", [0]))
        return (f"  {label:33}{spread(result[f'{key}_spans_per_s']):>28} spans/s"
                f"  (non-2xx {sum(result[f'{key}_errors']):.0f}"
                + (f", LOST {lost:.0f}" if lost else "") + ")")

    ratio = (common.median(result["delivered_gzip_spans_per_s"])
             / common.median(result["ingest_only_spans_per_s"]))
    return "\n".join([
        f"end-to-end spans, OTLP/HTTP in -> OTLP/gRPC out ({SPANS}-span batches, "
        f"{CONNECTIONS} connections; median of the runs, min-max):",
        line("ingest only (no exporter)", "ingest_only"),
        line("delivered, gzip (the default)", "delivered_gzip"),
        line("delivered, compression: none", "delivered_none"),
        line("delivered, OTLP/HTTP, gzip", "delivered_http_gzip"),
        f"  delivered gzip / ingest only     {ratio:>12.2f}",
    ])


if __name__ == "__main__":
    print(report(run()))
