"""The SDK against the real collector process: metrics on /metrics, health, alerts, outages."""

from __future__ import annotations

import contextlib
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flext_observability import flext_monitor_function
from helpers.procs import http_get, poll

SERVICE = "sdk-it"


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = http_get(f"{url}/metrics").text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(found, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def wait_for_sample(url: str, name: str, value: float, **labels: str) -> None:
    poll(lambda: samples(url), lambda found: sample(found, name, **labels) == value,
         timeout=20, interval=0.1, what=f"{name}{labels} == {value}")


@pytest.fixture
def daemon(daemon_factory):
    # The decorator sends spans: held (no span exporter here), not refused.
    return daemon_factory({"queue": {"hold_unexported": True}})


@pytest.fixture
def factory(daemon, make_factory):
    return make_factory(daemon.url, service_name=SERVICE, flush_interval=0.1,
                        max_retry_delay=0.2, max_retry_elapsed=60)


def test_decorated_calls_reach_prometheus_exposition(daemon, factory):
    @flext_monitor_function("it.work", factory=factory)
    def work(i: int) -> int:
        if i % 4 == 0:
            raise ValueError(i)
        return i

    for i in range(20):
        with contextlib.suppress(ValueError):
            work(i)
    assert factory.flush(10)
    labels = {"function": "it.work", "job": SERVICE}
    wait_for_sample(daemon.url, "flext_function_calls_total", 15, outcome="success", **labels)
    wait_for_sample(daemon.url, "flext_function_calls_total", 5, outcome="error", **labels)
    found = samples(daemon.url)
    assert sample(found, "flext_function_duration_seconds_count", outcome="success",
                  **labels) == 15
    assert sample(found, "flext_function_duration_seconds_count", outcome="error", **labels) == 5
    assert sample(found, "flext_function_duration_seconds_bucket", outcome="success", le="+Inf",
                  **labels) == 15


def test_health_and_alerts_appear_in_the_api(daemon, factory):
    assert factory.health.report(checks={"db": "healthy", "disk": "degraded"}).is_success
    assert factory.alerts.fire("SdkBacklog", severity="critical", summary="backlog",
                               labels={"queue": "jobs"}).is_success
    assert factory.flush(10)

    def health():
        return http_get(f"{daemon.url}/api/v1/health").json()["services"]

    (mine,) = poll(health, lambda s: any(x["service"] == SERVICE for x in s), 20, 0.1, "health")
    assert mine["status"] == "degraded"
    assert set(mine["checks"]) == {"db", "disk"}

    def alerts():
        return http_get(f"{daemon.url}/api/v1/alerts").json()["alerts"]

    firing = poll(alerts, lambda a: any(x["labels"]["alertname"] == "SdkBacklog" for x in a),
                  20, 0.1, "alert firing")
    (alert,) = [a for a in firing if a["labels"]["alertname"] == "SdkBacklog"]
    assert alert["labels"] == {"alertname": "SdkBacklog", "severity": "critical",
                               "service": SERVICE, "queue": "jobs"}
    assert alert["annotations"]["summary"] == "backlog"

    assert factory.alerts.resolve("SdkBacklog", severity="critical",
                                  labels={"queue": "jobs"}).is_success
    assert factory.flush(10)
    poll(alerts, lambda a: not any(x["labels"]["alertname"] == "SdkBacklog" for x in a),
         20, 0.1, "alert resolved")


def test_collector_outage_and_restart(daemon, make_factory):
    factory = make_factory(daemon.url, service_name=SERVICE, flush_interval=0.05,
                           buffer_limit=200, max_retry_delay=0.2, max_retry_elapsed=600)

    @flext_monitor_function("it.before", factory=factory)
    def before() -> None:
        pass

    before()
    assert factory.flush(10)
    daemon.stop()

    @flext_monitor_function("it.during", factory=factory)
    def during() -> None:
        pass

    started = time.perf_counter()
    for _ in range(2000):
        during()
    assert (time.perf_counter() - started) / 2000 < 0.001  # loosely; bench/ measures speed
    stats = factory.client.stats
    assert stats.dropped > 0
    assert stats.buffered <= 2 * 200

    daemon.restart()

    @flext_monitor_function("it.after", factory=factory)
    def after() -> None:
        pass

    for _ in range(3):
        after()
    sent_before = factory.client.stats.sent
    assert factory.flush(30)
    assert factory.client.stats.sent > sent_before
    wait_for_sample(daemon.url, "flext_function_calls_total", 3, function="it.after",
                    outcome="success", job=SERVICE)
