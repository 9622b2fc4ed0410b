"""`queue.kind: kafka`: ingest and delivery with one and with two instances on the same brokers.

A 3-broker Apache Kafka cluster (scripts/kafka-local.sh: replication factor 3,
min.insync.replicas 2, acks=all) on this machine. Spans: OTLP/HTTP protobuf batches of 512,
8 keep-alive connections (wrk) per instance, the instances' span exporter (one consumer
group) pointed at an OTLP/gRPC sink in this process; delivered is what the sink received per
second while the load ran. Native samples: batches of 1,000 counter samples, 8 connections
per instance. Produce latency: p50/p99 of `flext_collector_kafka_produce_latency_seconds`
(bucket bounds, upper) over every request of the span run. All on one machine: wrk, the
brokers, the collectors and the sink share its cores.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tests.helpers.kafka import KafkaCluster
from tests.helpers.otlp_sink import OtlpSink

from bench.common import WrkResult, collector, wrk_post
from bench.native_ingest import SAMPLES, native_body
from bench.otlp_ingest import traces_body

SPANS = 512
CONNECTIONS = 8
PROTOBUF = "application/x-protobuf"
LATENCY = "flext_collector_kafka_produce_latency_seconds_bucket"


def _queue(cluster: KafkaCluster, prefix: str) -> dict[str, Any]:
    topics = {kind: f"{prefix}_{kind}" for kind in
              ("spans", "metrics", "logs", "native_metrics", "alerts", "health")}
    return {"kind": "kafka", "kafka": {"brokers": cluster.bootstrap, "topics": topics,
                                       "group_prefix": prefix, "partitions": 6}}


@contextlib.contextmanager
def _instances(count: int, cluster: KafkaCluster, sink: OtlpSink) -> Iterator[list[str]]:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    config = {"queue": _queue(cluster, prefix),
              "exporters": {"jaeger": {"endpoint": sink.grpc_endpoint}}}
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(collector(config))[0] for _ in range(count)]
        time.sleep(3)  # the exporters' consumer group settles
        yield urls


def _load(urls: list[str], path: str, body: bytes, ctype: str, seconds: int) -> list[WrkResult]:
    results: list[WrkResult] = [WrkResult(0.0, 0, 0)] * len(urls)

    def one(i: int) -> None:
        results[i] = wrk_post(f"{urls[i]}{path}", body, ctype, CONNECTIONS, seconds, threads=1)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _latency(urls: list[str]) -> tuple[float, float]:
    """p50 and p99 (bucket upper bounds) of the produce latency over the instances."""
    buckets: dict[float, float] = {}
    for url in urls:
        for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
            if line.startswith(LATENCY):
                bound = line.split('le="', 1)[1].split('"', 1)[0]
                le = float("inf") if bound == "+Inf" else float(bound)
                buckets[le] = buckets.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    ordered = sorted(buckets.items())
    count = ordered[-1][1] if ordered else 0.0

    def quantile(q: float) -> float:
        for le, cumulative in ordered:
            if cumulative >= q * count:
                return le
        return float("nan")

    return quantile(0.5), quantile(0.99)


def _run_with(count: int, cluster: KafkaCluster, seconds: int) -> dict[str, float]:
    sink = OtlpSink(keep=False).start()
    try:
        with _instances(count, cluster, sink) as urls:
            started, before = time.monotonic(), sink.span_count
            spans = _load(urls, "/v1/traces", traces_body(SPANS), PROTOBUF, seconds)
            delivered = (sink.span_count - before) / (time.monotonic() - started)
            p50, p99 = _latency(urls)
            native = _load(urls, "/api/v1/metrics", native_body(), "application/json", seconds)
    finally:
        sink.stop()
    return {
        f"{count}_spans_per_s": sum(r.requests_per_second for r in spans) * SPANS,
        f"{count}_spans_errors": sum(r.errors for r in spans),
        f"{count}_delivered_spans_per_s": delivered,
        f"{count}_produce_p50_s": p50,
        f"{count}_produce_p99_s": p99,
        f"{count}_native_samples_per_s": sum(r.requests_per_second for r in native) * SAMPLES,
        f"{count}_native_errors": sum(r.errors for r in native),
    }


def run(seconds: int = 10) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="flext-bench-kafka-") as tmp:
        cluster = KafkaCluster(Path(tmp) / "kafka", brokers=3).start()
        try:
            return {**_run_with(1, cluster, seconds), **_run_with(2, cluster, seconds)}
        finally:
            cluster.stop()


def report(result: dict[str, float]) -> str:
    lines = [f"queue.kind kafka (3 brokers, RF 3, acks=all), {SPANS}-span and "
             f"{SAMPLES}-sample batches, {CONNECTIONS} connections per instance:"]
    for count in (1, 2):
        r = {key.split("_", 1)[1]: value for key, value in result.items()
             if key.startswith(f"{count}_")}
        lines += [
            f"  {count} instance(s): ingest {r['spans_per_s']:>10,.0f} spans/s "
            f"(non-2xx {r['spans_errors']:.0f}), delivered {r['delivered_spans_per_s']:>10,.0f} "
            f"spans/s, native {r['native_samples_per_s']:>10,.0f} samples/s "
            f"(non-2xx {r['native_errors']:.0f}), produce p50 <= {r['produce_p50_s'] * 1000:.0f} "
            f"ms, p99 <= {r['produce_p99_s'] * 1000:.0f} ms",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
