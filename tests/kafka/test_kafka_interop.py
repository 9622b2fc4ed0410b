"""Our Kafka topics and the OpenTelemetry Collector's (`otlp_proto`) are the same format: the
Go collector's kafka receiver reads what we write, and we read what its kafka exporter
writes (CONTRACT §9)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from test_kafka_queue import native_span, otlp_metrics, post, scrape

from helpers.exposition import sample
from helpers.kafka import KafkaCluster, ensure_running, kafka_queue
from helpers.otlp_sink import OtlpSink
from helpers.peers import Otelcol, PeerMissing
from helpers.procs import Daemon, ManagedProcess, deep_merge, free_ports, poll

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _whole_cluster(kafka_cluster: KafkaCluster) -> None:
    ensure_running(kafka_cluster)


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    receiver = OtlpSink().start()
    yield receiver
    receiver.stop()


def otelcol(work: Path, config: dict[str, Any], reaper: list[ManagedProcess]) -> Otelcol:
    try:
        peer = Otelcol(work, config)
    except PeerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    reaper.append(peer)
    return peer.start()


def ours(work: Path, config: dict[str, Any], reaper: list[ManagedProcess]) -> Daemon:
    daemon = Daemon(work, config, ready_timeout=60)
    reaper.append(daemon)
    return daemon.start()


def topics_of(daemon_config: dict[str, Any]) -> dict[str, str]:
    topics: dict[str, str] = daemon_config["queue"]["kafka"]["topics"]
    return topics


def file_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # Whole lines only: otelcol may be writing the last one.
    complete = path.read_text().split("\n")[:-1]
    return [json.loads(line) for line in complete if line.strip()]


def test_the_go_collector_reads_our_topics(
    kafka_cluster: KafkaCluster, tmp_path: Path, process_reaper: list[ManagedProcess]
) -> None:
    config = kafka_queue(kafka_cluster)
    topics = topics_of(config)
    daemon = ours(tmp_path / "ours", deep_merge(config, {"queue": {"hold_unexported": True}}),
                  process_reaper)
    out = tmp_path / "otelcol-out.json"
    otelcol(tmp_path / "otelcol", {
        "receivers": {"kafka": {
            "brokers": kafka_cluster.bootstrap, "group_id": "interop-reader",
            "initial_offset": "earliest",
            "traces": {"topics": [topics["spans"]], "encoding": "otlp_proto"},
            "metrics": {"topics": [topics["metrics"]], "encoding": "otlp_proto"},
        }},
        "exporters": {"file": {"path": str(out)}},
        "service": {"pipelines": {
            "traces": {"receivers": ["kafka"], "exporters": ["file"]},
            "metrics": {"receivers": ["kafka"], "exporters": ["file"]},
        }},
    }, process_reaper)
    spans = [native_span(f"interop-{i}") for i in range(40)]
    assert post(daemon, "spans", spans).status_code == 202
    for value in (1.0, 2.0, 3.0):
        answer = httpx.post(f"{daemon.url}/v1/metrics",
                            content=otlp_metrics("interop_points", value, "interop"),
                            headers={"Content-Type": "application/x-protobuf"}, timeout=15)
        assert answer.status_code == 200, answer.text

    def seen() -> tuple[set[str], list[float]]:
        span_ids: set[str] = set()
        points: list[float] = []
        for line in file_lines(out):
            for rs in line.get("resourceSpans", []):
                for ss in rs["scopeSpans"]:
                    span_ids |= {s["spanId"] for s in ss["spans"]}
            for rm in line.get("resourceMetrics", []):
                for sm in rm["scopeMetrics"]:
                    for m in sm["metrics"]:
                        if m["name"] == "interop_points":
                            points += [p["asDouble"] for p in m["sum"]["dataPoints"]]
        return span_ids, points

    span_ids, points = poll(seen, lambda got: len(got[0]) >= 40 and len(got[1]) >= 3,
                            timeout=90, interval=0.5, what="otelcol's file")
    assert span_ids == {s["span_id"] for s in spans}
    assert sorted(points) == [1.0, 2.0, 3.0]


def test_we_read_the_go_collectors_topics(
    kafka_cluster: KafkaCluster, sink: OtlpSink, tmp_path: Path,
    process_reaper: list[ManagedProcess],
) -> None:
    config = deep_merge(kafka_queue(kafka_cluster),
                        {"exporters": {"jaeger": {"endpoint": sink.grpc_endpoint}}})
    topics = topics_of(config)
    daemon = ours(tmp_path / "ours", config, process_reaper)
    http_port, grpc_port = free_ports(2)
    otelcol(tmp_path / "otelcol", {
        "receivers": {"otlp": {"protocols": {
            "http": {"endpoint": f"127.0.0.1:{http_port}"},
            "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
        }}},
        "exporters": {"kafka": {
            "brokers": kafka_cluster.bootstrap,
            "traces": {"topic": topics["spans"], "encoding": "otlp_proto"},
            "metrics": {"topic": topics["metrics"], "encoding": "otlp_proto"},
        }},
        "service": {"pipelines": {
            "traces": {"receivers": ["otlp"], "exporters": ["kafka"]},
            "metrics": {"receivers": ["otlp"], "exporters": ["kafka"]},
        }},
    }, process_reaper)
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "go-side"
    scope = resource.scope_spans.add()
    now = time.time_ns()
    ids = set()
    for i in range(25):
        span_id = secrets.token_bytes(8)
        ids.add(span_id.hex())
        scope.spans.add(trace_id=secrets.token_bytes(16), span_id=span_id, name=f"go-{i}",
                        start_time_unix_nano=now - 1000, end_time_unix_nano=now)
    headers = {"Content-Type": "application/x-protobuf"}
    base = f"http://127.0.0.1:{http_port}"
    answer = httpx.post(f"{base}/v1/traces", content=request.SerializeToString(),
                        headers=headers, timeout=15)
    assert answer.status_code == 200, answer.text
    answer = httpx.post(f"{base}/v1/metrics", headers=headers, timeout=15,
                        content=otlp_metrics("from_go_collector", 7.0, "go-side"))
    assert answer.status_code == 200, answer.text

    sink.wait_for_span_ids(ids, timeout=90)
    assert {s.name for s in sink.spans() if s.span_id in ids} == {f"go-{i}" for i in range(25)}
    poll(lambda: scrape(daemon), lambda text: sample(
        text, "from_go_collector_total", job="go-side", path="/a") == 7.0,
        timeout=60, interval=0.5, what="the Go collector's metric on /metrics")
