"""Native and health-derived alerts in a real Alertmanager (API v2), through outages and crashes."""

import asyncio
import time

import httpx

from helpers.procs import free_port, poll

FAST_RETRY = {"initial_interval": 0.1, "max_interval": 0.5}


def alertmanagers(*urls, **settings):
    return {"exporters": {"alertmanager": {
        "urls": list(urls), "resend_interval": 1, "retry": FAST_RETRY, **settings}}}


def post(daemon, kind, body):
    answer = httpx.post(f"{daemon.url}/api/v1/{kind}", json=body, timeout=10)
    assert answer.status_code == 202, answer.text


def held_alerts(daemon):
    return httpx.get(f"{daemon.url}/api/v1/alerts", timeout=10).json()["alerts"]


DISK_FULL = {
    "name": "DiskFull", "severity": "critical", "service": "db", "instance": "db-1",
    "summary": "disk almost full", "description": "sda is 97% full",
    "labels": {"disk": "sda"}, "annotations": {"runbook": "http://runbooks/disk"},
    "generator_url": "http://rules/disk",
}


def test_native_alerts_reach_every_alertmanager_and_resolve(
    daemon_factory, alertmanager, second_alertmanager, scrape
):
    dead = f"http://127.0.0.1:{free_port()}"
    daemon = daemon_factory(alertmanagers(alertmanager.url, dead, second_alertmanager.url))
    post(daemon, "alerts", DISK_FULL)

    only = ['alertname="DiskFull"']
    for am in (alertmanager, second_alertmanager):  # the dead one delays neither
        (got,) = am.wait_for(lambda alerts: len(alerts) == 1, timeout=10, filter=only)
        assert got["labels"] == {"alertname": "DiskFull", "severity": "critical",
                                 "service": "db", "instance": "db-1", "disk": "sda"}
        assert got["annotations"] == {"summary": "disk almost full",
                                      "description": "sda is 97% full",
                                      "runbook": "http://runbooks/disk"}
        assert got["generatorURL"] == "http://rules/disk"
    assert [a["labels"]["alertname"] for a in held_alerts(daemon)] == ["DiskFull"]

    # Re-sent every resend_interval (1 s) with endsAt moving ahead.
    first_end = alertmanager.alerts(filter=only)[0]["endsAt"]
    poll(lambda: alertmanager.alerts(filter=only)[0]["endsAt"], lambda end: end > first_end,
         5, 0.2, "endsAt pushed forward by a re-send")
    state = httpx.get(f"{daemon.url}/readyz", timeout=10).json()["exporters"]["alertmanager"]
    assert state[alertmanager.url]["state"] == "up"
    assert state[dead]["state"] == "down"
    assert scrape(daemon, "flext_collector_export_retries_total", exporter="alertmanager") > 0

    post(daemon, "alerts", {**DISK_FULL, "status": "resolved"})
    for am in (alertmanager, second_alertmanager):
        am.wait_for(lambda alerts: alerts == [], timeout=10, filter=only)
    assert held_alerts(daemon) == []


def test_an_alert_alertmanager_would_refuse_is_counted_and_the_others_still_go(
    daemon_factory, alertmanager, scrape
):
    daemon = daemon_factory(alertmanagers(alertmanager.url))
    post(daemon, "alerts", [
        {"name": "BadAnnotation", "service": "web", "annotations": {"runbook-url": "http://r"}},
        {"name": "GoodOne", "service": "web"},
    ])
    alertmanager.wait_for(lambda alerts: len(alerts) == 1, timeout=10,
                          filter=['alertname="GoodOne"'])
    poll(lambda: scrape(daemon, "flext_collector_dropped_items_total",
                        exporter="alertmanager", reason="invalid_alert"),
         lambda n: n == 1, 5, 0.1, "the invalid alert counted once")
    assert alertmanager.alerts(filter=['alertname="BadAnnotation"']) == []
    time.sleep(1.5)  # a re-send later it is still counted once
    assert scrape(daemon, "flext_collector_dropped_items_total",
                  exporter="alertmanager", reason="invalid_alert") == 1


def test_health_reports_fire_and_resolve_derived_alerts(daemon_factory, alertmanager):
    daemon = daemon_factory(alertmanagers(alertmanager.url))
    report = {"service": "billing", "instance": "b-1", "ttl_seconds": 2}
    post(daemon, "health", {**report, "status": "unhealthy", "checks": {
        "db": {"status": "unhealthy", "message": "connection refused"}}})
    only = ['service="billing"']
    (got,) = alertmanager.wait_for(
        lambda alerts: [a["labels"]["alertname"] for a in alerts] == ["ServiceUnhealthy"],
        timeout=10, filter=only)
    assert got["labels"] == {"alertname": "ServiceUnhealthy", "severity": "critical",
                             "service": "billing", "instance": "b-1"}
    assert got["annotations"]["summary"] == "billing (b-1) reports unhealthy"
    assert "connection refused" in got["annotations"]["description"]
    assert [a["labels"]["alertname"] for a in held_alerts(daemon)] == ["ServiceUnhealthy"]

    post(daemon, "health", {**report, "status": "healthy"})
    alertmanager.wait_for(lambda alerts: alerts == [], timeout=10, filter=only)

    # No report within the 2 s ttl: stale.
    (stale,) = alertmanager.wait_for(
        lambda alerts: [a["labels"]["alertname"] for a in alerts] == ["ServiceHealthStale"],
        timeout=10, filter=only)
    assert stale["labels"]["severity"] == "warning"
    health = httpx.get(f"{daemon.url}/api/v1/health", timeout=10).json()["services"]
    assert [(s["service"], s["instance"], s["status"], s["stale"]) for s in health] == [
        ("billing", "b-1", "stale", True)]

    post(daemon, "health", {**report, "status": "healthy"})
    alertmanager.wait_for(lambda alerts: alerts == [], timeout=10, filter=only)


def test_alerts_accepted_before_a_kill_9_reach_alertmanager_after_restart(
    daemon_factory, alertmanager, scrape
):
    daemon = daemon_factory(alertmanagers(alertmanager.url))
    alertmanager.stop()  # nothing can be delivered before the crash
    post(daemon, "alerts", DISK_FULL)
    post(daemon, "health", {"service": "billing", "status": "unhealthy"})
    poll(lambda: len(held_alerts(daemon)), lambda n: n == 2, 5, 0.05, "both alerts held")
    # Their queue records are acknowledged: only the held state can bring them back.
    for signal in ("alerts", "health"):
        poll(lambda s=signal: scrape(daemon, "flext_collector_queue_items", signal=s),
             lambda n: n == 0, 5, 0.05, f"{signal} records acknowledged")
    daemon.kill9()

    alertmanager.start()
    daemon.restart()
    alertmanager.wait_for(
        lambda alerts: {a["labels"]["alertname"] for a in alerts} == {
            "DiskFull", "ServiceUnhealthy"},
        timeout=10)


async def test_nothing_is_sent_before_the_state_caught_up_with_its_log(alertmanager):
    """A restarted instance on Kafka holds the state it last wrote until it has applied the
    log: the exporter sends nothing before (an alert resolved meanwhile never fires again
    in Alertmanager), then everything."""
    from prometheus_client import CollectorRegistry

    from flext_observability.exporters.alertmanager.config import AlertmanagerExporterConfig
    from flext_observability.exporters.alertmanager.exporter import AlertmanagerExporter
    from flext_observability.exporters.alertmanager.state import AlertState
    from flext_observability.models.native import Alert
    from flext_observability.telemetry import SelfTelemetry

    state = AlertState()
    caught_up = False
    state.caught_up = lambda: caught_up
    state.publish([Alert.model_validate({"name": "Stale", "service": "db"}).model_dump(
        mode="json")])
    exporter = AlertmanagerExporter(
        AlertmanagerExporterConfig(urls=[alertmanager.url], resend_interval=1, retry=FAST_RETRY),
        state, SelfTelemetry(CollectorRegistry(), None))
    await exporter.start()
    try:
        await asyncio.sleep(1.5)
        assert alertmanager.alerts(filter=['alertname="Stale"']) == []
        caught_up = True
        await asyncio.to_thread(alertmanager.wait_for, lambda alerts: len(alerts) == 1,
                                10, ['alertname="Stale"'])
    finally:
        await exporter.shutdown(time.monotonic() + 5)
