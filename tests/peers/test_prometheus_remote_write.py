"""Remote write into a real Prometheus (Debian's, `--web.enable-remote-write-receiver`).

The collector holds native counters, gauges and histograms, service health, and the OTLP
metrics of the golden comparison (``otlp_metric_cases``: sums, gauges, histograms, NaN,
infinities, odd names, target_info); its remote-write exporter sends them every 0.5 s.
Prometheus' query API must then return every series of the collector's /metrics with the
same labels (plus the external label) and the same value. Prometheus stopped and started
again on the same port: the exporter retries meanwhile and the latest values arrive.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from exposition_diff import Series, parse
from otlp_metric_cases import cases

from helpers.exposition import sample
from helpers.procs import Daemon, Prometheus, http_get, poll

PROTOBUF = {"Content-Type": "application/x-protobuf"}
EXTERNAL = ("collector", "rw-test")
# The collector's own telemetry is scraped, not remote-written.
OWN = ("flext_collector_", "process_", "python_")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Prometheus]]:
    """Prometheus with the remote-write receiver, and a collector writing to it every 0.5 s."""
    if shutil.which("prometheus") is None:
        pytest.fail("`prometheus` is not installed: run `make install-test`", pytrace=False)
    work = tmp_path_factory.mktemp("remote-write")
    (work / "prometheus").mkdir()
    prometheus = Prometheus(work / "prometheus", {"global": {}},
                            args=["--web.enable-remote-write-receiver"])
    daemon = Daemon(work / "daemon", {"exporters": {"prometheus_remote_write": {
        "url": f"{prometheus.url}/api/v1/write",
        "interval": "0.5s",
        "max_samples_per_request": 25,
        "external_labels": dict([EXTERNAL]),
        "retry": {"initial_interval": "0.1s", "max_interval": "0.5s"},
    }}})
    try:
        prometheus.start()
        daemon.start()
        yield daemon, prometheus
    finally:
        daemon.stop()
        prometheus.stop()


def held_series(daemon: Daemon) -> dict[Series, float]:
    """The series on the collector's /metrics but its own telemetry."""
    text = httpx.get(f"{daemon.url}/metrics", timeout=10).text
    return {s: v for s, v in parse(text).samples.items() if not s[0].startswith(OWN)}


def in_prometheus(prometheus: Prometheus) -> dict[Series, float]:
    """Every series Prometheus holds now, its external label checked and left out."""
    found = {}
    for result in prometheus.query('{__name__=~".+"}'):
        labels: dict[str, Any] = dict(result["metric"])
        assert labels.pop(EXTERNAL[0]) == EXTERNAL[1], result
        name = labels.pop("__name__")
        series = (name, tuple(sorted((k, v) for k, v in labels.items() if v)))
        found[series] = float(result["value"][1])
    return found


def same(left: dict[Series, float], right: dict[Series, float]) -> bool:
    return left.keys() == right.keys() and all(
        left[s] == right[s] or (math.isnan(left[s]) and math.isnan(right[s])) for s in left
    )


def post(daemon: Daemon, path: str, body: Any) -> None:
    answer = httpx.post(f"{daemon.url}{path}", json=body, timeout=10)
    assert answer.status_code == 202, answer.text


def exporter_state(daemon: Daemon) -> dict[str, Any]:
    body = httpx.get(f"{daemon.url}/readyz", timeout=10).json()
    return body["exporters"]["prometheus_remote_write"]


def test_prometheus_holds_every_series_of_metrics_with_its_value(
    stack: tuple[Daemon, Prometheus],
) -> None:
    daemon, prometheus = stack
    base = {"service": "checkout", "instance": "pod-1"}
    post(daemon, "/api/v1/metrics", [
        *({"name": "orders", "type": "counter", "value": v, **base, "labels": {"region": "eu"}}
          for v in (1, 2, 3.5)),
        {"name": "queue.depth", "type": "gauge", "value": -7, **base},
        *({"name": "latency", "type": "histogram", "value": v, "unit": "s",
           "buckets": [0.25, 1, 5], **base} for v in (0.1, 0.3, 2, 9)),
        *({"name": "fanout", "type": "gauge", "value": i, **base, "labels": {"shard": str(i)}}
          for i in range(60)),
    ])
    post(daemon, "/api/v1/health", {"service": "db", "instance": "db-1", "status": "degraded"})
    for requests in cases().values():
        for body in requests:
            answer = httpx.post(f"{daemon.url}/v1/metrics", content=body.SerializeToString(),
                                headers=PROTOBUF, timeout=10)
            assert answer.status_code == 200, answer.text

    def settled() -> tuple[dict[Series, float], dict[Series, float]]:
        return held_series(daemon), in_prometheus(prometheus)

    held, written = poll(settled, lambda pair: len(pair[0]) > 100 and same(*pair), 30, 0.3,
                         "Prometheus holding the series of /metrics")
    names = {name for name, _ in held}
    # What the comparison covered: counters, histograms, native and OTLP, target_info, health.
    assert {"orders_total", "latency_bucket", "target_info", "golden_requests_total",
            "golden_http_duration_seconds_bucket", "flext_service_health_status"} <= names
    key = ("orders_total", (("instance", "pod-1"), ("job", "checkout"), ("region", "eu")))
    assert written[key] == 6.5
    assert math.isnan(written[("golden_nan_gauge", (
        ("instance", "i-1"), ("job", "golden"), ("otel_scope_name", "golden.scope")))])
    state = exporter_state(daemon)
    assert state["state"] == "up"
    assert state["last_round"]["requests"] >= 2  # sharded: 25 samples per request at most


def test_prometheus_down_then_back_gets_the_latest_values(
    stack: tuple[Daemon, Prometheus],
) -> None:
    daemon, prometheus = stack
    counter = {"name": "outage_orders", "type": "counter", "service": "outage"}
    post(daemon, "/api/v1/metrics", {**counter, "value": 1})
    prometheus.wait_for('outage_orders_total{job="outage"}')
    metrics = f"{daemon.url}/metrics"
    exported_before = sample(httpx.get(metrics).text, "flext_collector_exported_items_total",
                             exporter="prometheus_remote_write")
    retries_before = sample(httpx.get(metrics).text, "flext_collector_export_retries_total",
                            exporter="prometheus_remote_write") or 0.0

    prometheus.stop()
    post(daemon, "/api/v1/metrics", {**counter, "value": 41})
    down = poll(lambda: exporter_state(daemon), lambda s: s["state"] == "down", 10, 0.1,
                "the exporter seeing Prometheus down")
    assert "ConnectError" in down["last_error"] or "refused" in down["last_error"], down
    poll(lambda: sample(httpx.get(metrics).text, "flext_collector_export_retries_total",
                        exporter="prometheus_remote_write") or 0.0,
         lambda retries: retries >= retries_before + 3, 10, 0.1, "retries while down")

    prometheus.start()
    prometheus.wait_for('outage_orders_total{job="outage"}',
                        lambda r: r and float(r[0]["value"][1]) == 42, timeout=30)
    poll(lambda: exporter_state(daemon), lambda s: s["state"] == "up", 10, 0.1, "up again")
    text = httpx.get(metrics).text
    assert sample(text, "flext_collector_exported_items_total",
                  exporter="prometheus_remote_write") > exported_before
    assert sample(text, "flext_collector_dropped_items_total",
                  exporter="prometheus_remote_write", reason="permanent_error") is None
    assert sample(text, "flext_collector_exporter_last_success_timestamp_seconds",
                  exporter="prometheus_remote_write") > 0
    # The samples written before the outage are kept, those after are newer: one series,
    # in order, 1 then 42 (the round retried during the outage took 42 or 1).
    history = http_get(f"{prometheus.url}/api/v1/query",
                       query='outage_orders_total{job="outage"}[10m]').json()["data"]["result"]
    points = [float(value) for _, value in history[0]["values"]]
    assert (points[0], points[-1]) == (1, 42)
    assert points == sorted(points)

