"""The daemon with ingest workers (server.workers), as processes: what the collector
promises (durable 202s, clean stop, every route) holds across the process boundary."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from helpers.exposition import sample, total
from helpers.otlp_sink import OtlpSink
from helpers.procs import poll


def workers_of(pid: int) -> list[int]:
    """The ingest worker processes of the daemon `pid` (its children running Python)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = []
    for child in children.read_text().split() if children.exists() else []:
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" in cmdline:
            found.append(int(child))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[1][0] != "Z"


def batch(tag: str, n: int = 50):
    return [{"name": "worker_items", "type": "counter", "value": 1, "service": "w",
             "labels": {"tag": tag}} for _ in range(n)]


def test_every_route_answers_through_the_workers(daemon_factory):
    daemon = daemon_factory({"server": {"workers": 2}})
    poll(lambda: workers_of(daemon.pid), lambda found: len(found) == 2, 10, 0.05, "2 workers")
    url = daemon.url
    assert httpx.post(f"{url}/api/v1/metrics", json=batch("routes")).status_code == 202
    assert httpx.post(f"{url}/api/v1/alerts", json={"name": "DiskFull", "service": "db",
                                                    "severity": "critical"}).status_code == 202
    assert httpx.post(f"{url}/api/v1/health",
                      json={"service": "db", "status": "degraded"}).status_code == 202
    # The workers send their counts every quarter second: the collector's lag behind.
    poll(lambda: httpx.get(f"{url}/metrics").text,
         lambda t: sample(t, "worker_items_total", tag="routes") == 50
         and sample(t, "flext_collector_received_items_total", signal="metrics",
                    receiver="native") == 50,
         10, 0.05, "metrics and their count from a worker reach /metrics")
    alerts = poll(lambda: httpx.get(f"{url}/api/v1/alerts").json()["alerts"], bool, 10, 0.05,
                  "the alert is held")
    assert alerts[0]["labels"]["alertname"] == "DiskFull"
    health = poll(lambda: httpx.get(f"{url}/api/v1/health").json()["services"], bool, 10,
                  0.05, "the health report is held")
    assert health[0]["status"] == "degraded"
    assert httpx.get(f"{url}/readyz").json()["ready"] is True
    assert "/api/v1/metrics" in httpx.get(f"{url}/openapi.json").json()["paths"]
    assert httpx.get(f"{url}/docs").status_code == 200
    assert httpx.get(f"{url}/nothing-here").status_code == 404
    assert httpx.get(f"{url}/api/v1/metrics").status_code == 405


def test_a_worker_checks_tokens_and_tags_the_tenant(daemon_factory):
    daemon = daemon_factory({"server": {"workers": 1, "auth": {
        "tokens": [{"token": "s3cret-token", "tenant": "team-a"}]}}})
    url = f"{daemon.url}/api/v1/metrics"
    assert httpx.post(url, json=batch("auth")).status_code == 401
    good = {"Authorization": "Bearer s3cret-token"}
    assert httpx.post(url, json=batch("auth"), headers=good).status_code == 202
    poll(lambda: httpx.get(f"{daemon.url}/metrics").text,
         lambda t: sample(t, "worker_items_total", tag="auth", tenant="team-a") == 50, 10, 0.05,
         "the tenant label set by the worker")
    refused = poll(lambda: httpx.get(f"{daemon.url}/metrics").text,
                   lambda t: sample(t, "flext_collector_refused_items_total",
                                    signal="metrics", reason="unauthorized") is not None,
                   10, 0.05, "the worker's refusal counted by the collector")
    assert "s3cret-token" not in refused


def test_accepted_items_survive_kill_9_and_the_workers_go_with_the_collector(daemon_factory):
    held = daemon_factory({"server": {"workers": 2},
                           "exporters": {"prometheus": {"enabled": False}}})
    workers = poll(lambda: workers_of(held.pid), lambda found: len(found) == 2, 10, 0.05,
                   "2 workers")
    url = f"{held.url}/api/v1/metrics"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(
            lambda i: httpx.post(url, json=batch(str(i % 4)), timeout=30).status_code,
            range(40)))
    assert statuses == [202] * 40
    held.kill9()
    poll(lambda: [w for w in workers if alive(w)], lambda left: not left, 10, 0.05,
         "the workers exit once the collector process is gone")

    restarted = daemon_factory({"server": {"workers": 2}}, data_dir=held.data_dir)
    poll(lambda: httpx.get(f"{restarted.url}/metrics").text,
         lambda t: sum(sample(t, "worker_items_total", tag=str(w)) or 0 for w in range(4))
         == 2000, 20, 0.1, "all 2000 accepted items handled")


def test_sigterm_drains_the_workers_first_and_keeps_every_accepted_item(daemon_factory):
    held = daemon_factory({"server": {"workers": 2},
                           "exporters": {"prometheus": {"enabled": False}}})
    url = f"{held.url}/api/v1/metrics"
    accepted = []
    stop = threading.Event()

    def sender(n):
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    answer = client.post(url, json=batch(f"drain{n}", 20))
                except httpx.TransportError:
                    return
                if answer.status_code == 202:
                    accepted.append(20)
                else:
                    assert answer.status_code in (503,), answer.text

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    assert held.stop(timeout=40) == 0
    stop.set()
    for thread in threads:
        thread.join(30)
    assert accepted

    restarted = daemon_factory({"server": {"workers": 2}}, data_dir=held.data_dir)
    poll(lambda: httpx.get(f"{restarted.url}/metrics").text,
         lambda t: sum(sample(t, "worker_items_total", tag=f"drain{n}") or 0 for n in range(4))
         == sum(accepted), 20, 0.1, f"all {sum(accepted)} accepted items handled")


def test_a_worker_that_dies_is_replaced(daemon_factory):
    daemon = daemon_factory({"server": {"workers": 2}})
    victim = poll(lambda: workers_of(daemon.pid), lambda found: len(found) == 2, 10, 0.05,
                  "2 workers")[0]
    os.kill(victim, signal.SIGKILL)
    replaced = poll(lambda: workers_of(daemon.pid),
                    lambda found: len(found) == 2 and victim not in found, 20, 0.1,
                    "a new worker in place of the killed one")
    assert victim not in replaced
    for i in range(20):
        answer = httpx.post(f"{daemon.url}/api/v1/metrics", json=batch(f"after{i}", 1))
        assert answer.status_code == 202
    assert "starting another" in daemon.log_tail(200)


def test_otlp_http_through_the_workers(daemon_factory):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    daemon = daemon_factory({"server": {"workers": 2}, "queue": {"hold_unexported": True}})
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{daemon.url}/v1/traces")))
    with provider.get_tracer("workers").start_as_current_span("through a worker"):
        pass
    provider.shutdown()
    poll(lambda: httpx.get(f"{daemon.url}/metrics").text,
         lambda t: sample(t, "flext_collector_received_items_total", signal="spans",
                          receiver="otlp_http") == 1, 10, 0.05, "the span counted")


def spans_request(sender: int, batch: int, count: int = 100) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(count):
        scope.spans.add(trace_id=(sender << 64 | batch).to_bytes(16, "big"),
                        span_id=(i + 1).to_bytes(8, "big"), name="flood",
                        start_time_unix_nano=1, end_time_unix_nano=2)
    return request.SerializeToString()


def test_a_flood_through_the_workers_is_refused_cleanly_and_nothing_accepted_is_lost(
        daemon_factory):
    """A small queue and a slow span downstream: only 200/202/429/503 come back, /healthz
    stays up, and every accepted item is delivered once the downstream catches up."""
    sink = OtlpSink(keep=False).start()
    try:
        sink.delay = 0.2
        daemon = daemon_factory({
            "server": {"workers": 2},
            "queue": {"max_items": 20_000, "retry_after_seconds": 1},
            "exporters": {"jaeger": {"endpoint": sink.grpc_endpoint, "compression": "none",
                                     "batch_max_items": 500, "num_senders": 1}},
        })
        accepted = {"metrics": 0, "spans": 0}
        answers: dict[int, int] = {}
        lock = threading.Lock()
        stop = threading.Event()

        def send(sender: int, spans: bool) -> None:
            with httpx.Client(timeout=30) as client:
                batch = 0
                while not stop.is_set():
                    batch += 1
                    if spans:
                        answer = client.post(f"{daemon.url}/v1/traces",
                                             content=spans_request(sender, batch),
                                             headers={"Content-Type": "application/x-protobuf"})
                    else:
                        answer = client.post(f"{daemon.url}/api/v1/metrics", json=[
                            {"name": "flood_items", "type": "counter", "value": 1,
                             "service": "flood", "labels": {"sender": str(sender)}}] * 200)
                    with lock:
                        answers[answer.status_code] = answers.get(answer.status_code, 0) + 1
                        if answer.status_code in (200, 202):
                            accepted["spans" if spans else "metrics"] += 100 if spans else 200

        threads = [threading.Thread(target=send, args=(n, n % 3 == 0)) for n in range(9)]
        for thread in threads:
            thread.start()
        health = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            health.append(httpx.get(f"{daemon.url}/healthz", timeout=10).status_code)
            time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join(30)
        sink.delay = 0.0

        assert set(answers) <= {200, 202, 429, 503}, answers
        assert answers.get(429, 0) > 0, answers
        assert set(health) == {200}
        text = poll(lambda: httpx.get(f"{daemon.url}/metrics").text,
                    lambda t: total(t, "flext_collector_queue_items") == 0
                    and total(t, "flood_items_total") == accepted["metrics"],
                    60, 0.2, "every accepted item delivered")
        assert total(text, "flext_collector_refused_items_total", reason="queue_full") > 0
        poll(lambda: sink.span_count, lambda n: n >= accepted["spans"], 30, 0.1,
             "every accepted span delivered")
    finally:
        sink.stop()
