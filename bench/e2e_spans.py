"""End-to-end spans/s: OTLP/HTTP protobuf in, durable queue, OTLP/gRPC out to a receiver.

Batches of 512 spans (built with opentelemetry-proto), 8 keep-alive connections (wrk).
The same load runs twice: with no span exporter (ingest only: the spans stay queued) and
with `exporters.jaeger` pointed at an OTLP/gRPC sink in this process (the test suite's
real OTLP receiver, counting what it is sent), once with gzip (the default) and once
uncompressed. The delivered figure is what the sink received per second while the load
ran; the gap to ingest-only is the cost of the durable queue's reads and acks, of the
fan-out and of compression. All on one machine: wrk, the collector and the sink share
its cores.
"""

from __future__ import annotations

import time

from tests.helpers.otlp_sink import OtlpSink

from bench.common import collector, wrk_post
from bench.otlp_ingest import traces_body

SPANS = 512
CONNECTIONS = 8
PROTOBUF = "application/x-protobuf"
# Room for every span of the run: ingest-only leaves them all in the queue.
# Held with no exporter (the ingest-only run), where they would be refused by default.
BIG_QUEUE = {"max_items": 500_000_000, "max_bytes": 50 * 1024**3, "hold_unexported": True}


def _delivered(body: bytes, seconds: int, sink: OtlpSink, compression: str) -> tuple[float, int]:
    """Load with the exporter on; (spans/s the sink received meanwhile, non-2xx answers)."""
    exporter = {"endpoint": sink.grpc_endpoint, "compression": compression}
    with collector({"queue": BIG_QUEUE, "exporters": {"jaeger": exporter}}) as (url, _):
        started, before = time.monotonic(), sink.span_count
        loaded = wrk_post(f"{url}/v1/traces", body, PROTOBUF, CONNECTIONS, seconds)
        return (sink.span_count - before) / (time.monotonic() - started), loaded.errors


def run(seconds: int = 10) -> dict[str, float]:
    body = traces_body(SPANS)
    with collector({"queue": BIG_QUEUE}) as (url, _):
        ingest = wrk_post(f"{url}/v1/traces", body, PROTOBUF, CONNECTIONS, seconds)
    result: dict[str, float] = {
        "ingest_only_spans_per_s": ingest.requests_per_second * SPANS,
        "ingest_only_errors": ingest.errors,
    }
    sink = OtlpSink(keep=False).start()
    try:
        for compression in ("gzip", "none"):
            rate, errors = _delivered(body, seconds, sink, compression)
            result[f"delivered_{compression}_spans_per_s"] = rate
            result[f"delivered_{compression}_errors"] = errors
    finally:
        sink.stop()
    result["delivered_gzip_vs_ingest_only"] = (
        result["delivered_gzip_spans_per_s"] / result["ingest_only_spans_per_s"]
    )
    return result


def report(result: dict[str, float]) -> str:
    return (
        f"end-to-end spans, OTLP/HTTP in -> OTLP/gRPC out ({SPANS}-span batches, "
        f"{CONNECTIONS} connections):\n"
        f"  ingest only (no exporter)        {result['ingest_only_spans_per_s']:>12,.0f} spans/s"
        f"  (non-2xx {result['ingest_only_errors']})\n"
        f"  delivered, gzip (the default)    {result['delivered_gzip_spans_per_s']:>12,.0f} spans/s"
        f"  (non-2xx {result['delivered_gzip_errors']})\n"
        f"  delivered, compression: none     {result['delivered_none_spans_per_s']:>12,.0f} spans/s"
        f"  (non-2xx {result['delivered_none_errors']})\n"
        f"  delivered gzip / ingest only     {result['delivered_gzip_vs_ingest_only']:>12.2f}"
    )


if __name__ == "__main__":
    print(report(run()))
