"""Metrics posted over HTTP, scraped by a real Prometheus, read back through its query API."""

import subprocess

import httpx
import pytest


def post(daemon, items):
    answer = httpx.post(f"{daemon.url}/api/v1/metrics", json=items, timeout=10)
    assert answer.status_code == 202, answer.text


def value(result):
    assert len(result) == 1, result
    return float(result[0]["value"][1])


@pytest.fixture
def scraped(daemon_factory, prometheus_factory):
    daemon = daemon_factory()
    prometheus = prometheus_factory([daemon.url], scrape_interval="1s", honor_labels=True)
    return daemon, prometheus


def test_counter_gauge_histogram_reach_prometheus(scraped):
    daemon, prometheus = scraped
    base = {"service": "checkout", "instance": "pod-1"}
    post(daemon, [{"name": "orders", "type": "counter", "value": v, **base,
                   "labels": {"region": "eu"}} for v in (1, 2, 3.5)])
    post(daemon, {"name": "queue_depth", "type": "gauge", "value": 5, **base})
    post(daemon, {"name": "queue_depth", "type": "gauge", "value": 7, **base})
    post(daemon, [{"name": "latency.seconds", "type": "histogram", "value": v,
                   "buckets": [0.25, 1, 5], **base} for v in (0.1, 0.3, 2, 9)])

    sel = '{job="checkout",instance="pod-1"}'
    counter = prometheus.wait_for('orders_total{job="checkout",instance="pod-1",region="eu"}')
    assert value(counter) == 6.5
    assert value(prometheus.wait_for(f"queue_depth{sel}")) == 7
    buckets = prometheus.wait_for(f"latency_seconds_bucket{sel}", lambda r: len(r) == 4)
    by_le = {b["metric"]["le"]: float(b["value"][1]) for b in buckets}
    assert by_le == {"0.25": 1, "1.0": 2, "5.0": 3, "+Inf": 4}
    assert value(prometheus.query(f"latency_seconds_sum{sel}")) == pytest.approx(11.4)
    assert value(prometheus.query(f"latency_seconds_count{sel}")) == 4

    post(daemon, {"name": "orders", "type": "counter", "value": 10, **base,
                  "labels": {"region": "eu"}})
    prometheus.wait_for('orders_total{job="checkout",region="eu"}',
                        lambda r: r and float(r[0]["value"][1]) == 16.5)


def test_self_telemetry_and_health_gauges_are_scraped(scraped):
    daemon, prometheus = scraped
    post(daemon, {"name": "x", "type": "gauge", "value": 1, "service": "s"})
    answer = httpx.post(f"{daemon.url}/api/v1/health",
                        json={"service": "db", "instance": "db-1", "status": "degraded"})
    assert answer.status_code == 202
    received = prometheus.wait_for(
        'flext_collector_received_items_total{signal="metrics",receiver="native"}')
    assert value(received) >= 1
    status = prometheus.wait_for(
        'flext_service_health_status{service="db",instance="db-1",status="degraded"}')
    assert value(status) == 1
    assert value(prometheus.query(
        'flext_service_health_status{service="db",status="healthy"}')) == 0
    assert value(prometheus.query("flext_collector_queue_capacity_items")) == 1_000_000


def test_exposition_passes_promtool(daemon_factory):
    daemon = daemon_factory()
    post(daemon, [
        {"name": "http.requests", "type": "counter", "value": 1, "service": "a",
         "labels": {"code": "200"}, "description": "Requests served"},
        {"name": "temp_celsius", "type": "gauge", "value": -3.5, "service": "a", "unit": "celsius"},
        {"name": "size_bytes", "type": "histogram", "value": 1024, "service": "a"},
    ])
    httpx.post(f"{daemon.url}/api/v1/health", json={"service": "a", "status": "healthy"})
    from helpers.procs import poll

    text = poll(lambda: httpx.get(f"{daemon.url}/metrics").text,
                lambda t: "size_bytes_bucket" in t and "flext_service_health_status" in t,
                10, 0.05, "exposition")
    checked = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                             capture_output=True, timeout=30)
    problems = checked.stdout.decode() + checked.stderr.decode()
    assert checked.returncode == 0, problems
    openmetrics = httpx.get(f"{daemon.url}/metrics",
                            headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


def test_series_expire_after_metric_expiration(daemon_factory):
    daemon = daemon_factory({"exporters": {"prometheus": {"metric_expiration": "1s"}}})
    post(daemon, {"name": "short_lived", "type": "gauge", "value": 1, "service": "a"})
    from helpers.procs import poll

    poll(lambda: httpx.get(f"{daemon.url}/metrics").text, lambda t: "short_lived{" in t, 10,
         0.05, "series present")
    poll(lambda: httpx.get(f"{daemon.url}/metrics").text, lambda t: "short_lived{" not in t, 10,
         0.2, "series expired")
