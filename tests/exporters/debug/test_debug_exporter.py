"""The debug exporter, against the real daemon: one log line per batch with the signal, its
items and its OTLP resources; it takes spans off the queue as an exporter does, so spans
are accepted with no other span exporter."""

import re

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from helpers.procs import poll

NOW = 1_795_773_000 * 10**9
LINE = re.compile(
    r"INFO flext_observability\.exporters\.debug\.exporter: debug exporter: "
    r"signal=(\w+) items=(\d+) resources=(\d+) records=(\d+)"
)


def traces(resources: int, spans: int) -> bytes:
    request = ExportTraceServiceRequest()
    for r in range(resources):
        resource = request.resource_spans.add()
        resource.resource.attributes.add(key="service.name").value.string_value = f"s{r}"
        scope = resource.scope_spans.add()
        for i in range(spans):
            span_id = (r * 100 + i + 1).to_bytes(8, "big")
            scope.spans.add(trace_id=bytes(range(1, 17)), span_id=span_id, name="op",
                            start_time_unix_nano=NOW, end_time_unix_nano=NOW + 1)
    return request.SerializeToString()


def lines(daemon) -> dict[str, tuple[int, int, int]]:
    """signal -> (items, resources, records) summed over the debug lines so far."""
    found: dict[str, tuple[int, int, int]] = {}
    for signal, items, resources, records in LINE.findall(daemon.log_tail(400)):
        old = found.get(signal, (0, 0, 0))
        found[signal] = (old[0] + int(items), old[1] + int(resources), old[2] + int(records))
    return found


def test_debug_logs_one_line_per_batch_with_signal_items_and_resources(daemon_factory):
    daemon = daemon_factory({"exporters": {"debug": {"enabled": True}}})
    answer = httpx.post(f"{daemon.url}/v1/traces", content=traces(2, 3), timeout=10,
                        headers={"Content-Type": "application/x-protobuf"})
    assert answer.status_code == 200, answer.text
    metrics = [{"name": "jobs_total", "type": "counter", "value": 1, "service": "a"},
               {"name": "jobs_total", "type": "counter", "value": 2, "service": "b"}]
    assert httpx.post(f"{daemon.url}/api/v1/metrics", json=metrics,
                      timeout=10).status_code == 202
    seen = poll(lambda: lines(daemon), lambda f: "spans" in f and "metrics" in f, 15, 0.1,
                "the debug lines")
    assert seen["spans"] == (6, 2, 1)
    assert seen["metrics"][0] == 2
    # The debug exporter took the spans off the queue.
    poll(lambda: httpx.get(f"{daemon.url}/readyz", timeout=10).json(),
         lambda ready: ready["queue"]["items"] == 0 and "debug" in ready["exporters"], 15, 0.1,
         "the queue drained")


def test_without_debug_there_is_no_debug_line(daemon_factory):
    daemon = daemon_factory()
    metrics = {"name": "jobs_total", "type": "counter", "value": 1, "service": "a"}
    assert httpx.post(f"{daemon.url}/api/v1/metrics", json=metrics,
                      timeout=10).status_code == 202
    poll(lambda: httpx.get(f"{daemon.url}/metrics", timeout=10).text,
         lambda text: "jobs_total" in text, 15, 0.1, "the metric exported")
    assert "debug" not in httpx.get(f"{daemon.url}/readyz", timeout=10).json()["exporters"]
    assert not LINE.search(daemon.log_tail(400))
