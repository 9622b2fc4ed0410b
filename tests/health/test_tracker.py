"""Health tracker: derived alerts on status changes and staleness, snapshot across restarts."""

import itertools

import orjson
import pytest

from flext_observability.exporters.alertmanager.state import AlertState
from flext_observability.health.tracker import HealthTracker
from flext_observability.models.native import HealthReport
from flext_observability.pipeline.queue import Record, Signal

SEQ = itertools.count(1)


class Clocks:
    def __init__(self):
        self.monotonic = 1000.0
        self.wall = 1_700_000_000.0

    def advance(self, seconds):
        self.monotonic += seconds
        self.wall += seconds


def record(*reports):
    payload = orjson.dumps([
        HealthReport.model_validate_json(orjson.dumps(r)).model_dump(mode="json") for r in reports
    ])
    return Record(next(SEQ), Signal.HEALTH, "native-json", payload, len(reports))


def report(status, **extra):
    return {"service": "billing", "instance": "b-1", "status": status, "ttl_seconds": 10,
            **extra}


def make(clocks):
    alerts = AlertState(wall_clock=lambda: clocks.wall)
    tracker = HealthTracker(
        60, alerts.publish, clock=lambda: clocks.monotonic, wall_clock=lambda: clocks.wall,
    )
    return tracker, alerts


def firing(alerts):
    return {held.labels["alertname"]: held for held in alerts.firing.values()}


@pytest.fixture
def clocks():
    return Clocks()


def test_derived_alerts_follow_the_current_status(clocks):
    tracker, alerts = make(clocks)
    tracker.handle([record(report("unhealthy", checks={
        "db": {"status": "unhealthy", "message": "connection refused"},
        "cache": {"status": "healthy", "message": "ok"},
    }))])
    unhealthy = firing(alerts)["ServiceUnhealthy"]
    assert unhealthy.labels == {"alertname": "ServiceUnhealthy", "severity": "critical",
                                "service": "billing", "instance": "b-1"}
    assert unhealthy.annotations["summary"] == "billing (b-1) reports unhealthy"
    assert unhealthy.annotations["description"] == "db: unhealthy - connection refused"

    tracker.handle([record(report("degraded", checks={"disk": {"status": "degraded"}}))])
    assert set(firing(alerts)) == {"ServiceDegraded"}
    assert firing(alerts)["ServiceDegraded"].labels["severity"] == "warning"
    resolved = {held.labels["alertname"] for held in alerts.resolved.values()}
    assert resolved == {"ServiceUnhealthy"}

    tracker.handle([record(report("healthy"))])
    assert firing(alerts) == {}
    assert tracker.snapshot()[0]["status"] == "healthy"


def test_no_report_within_the_ttl_fires_stale_until_the_service_reports(clocks):
    tracker, alerts = make(clocks)
    tracker.handle([record(report("healthy"))])
    clocks.advance(9)
    tracker.check()
    assert firing(alerts) == {}
    clocks.advance(2)
    tracker.check()
    stale = firing(alerts)["ServiceHealthStale"]
    assert stale.labels["severity"] == "warning"
    assert stale.annotations["summary"] == "billing (b-1) sent no health report for 10s"
    assert tracker.snapshot()[0]["stale"] is True

    tracker.handle([record(report("healthy"))])
    assert firing(alerts) == {}
    assert tracker.snapshot()[0]["stale"] is False


def test_a_repeated_report_changes_nothing_an_alertmanager_would_see(clocks):
    tracker, alerts = make(clocks)
    tracker.handle([record(report("unhealthy"))])
    version = alerts.version
    clocks.advance(1)
    tracker.handle([record(report("unhealthy"))])
    tracker.check()
    assert alerts.version == version


def test_the_tracker_and_its_alerts_survive_a_restart(clocks):
    tracker, alerts = make(clocks)
    tracker.handle([record(report("unhealthy"))])
    health_rows, alert_rows = list(tracker.changes().items()), list(alerts.changes().items())
    assert tracker.changes() == {}
    clocks.monotonic -= 500  # a new process: another monotonic origin; the wall clock goes on
    clocks.advance(4)

    restarted, restarted_alerts = make(clocks)
    restarted.restore(health_rows)
    restarted_alerts.restore(alert_rows)
    assert set(firing(restarted_alerts)) == {"ServiceUnhealthy"}
    assert restarted.snapshot()[0]["status"] == "unhealthy"
    clocks.advance(7)  # 11 s after the report: past its 10 s ttl
    restarted.check()
    assert set(firing(restarted_alerts)) == {"ServiceHealthStale"}


def tenant_record(tenant, status):
    payload = orjson.dumps([{**report(status), "tenant": tenant}])
    return Record(next(SEQ), Signal.HEALTH, "native-json", payload, 1)


def test_tenants_have_their_own_service_and_alerts(clocks):
    tracker, alerts = make(clocks)
    tracker.handle([tenant_record("team-a", "healthy"), tenant_record("team-b", "unhealthy")])
    assert {(h["tenant"], h["status"]) for h in tracker.snapshot()} == {
        ("team-a", "healthy"), ("team-b", "unhealthy")}
    assert [h["status"] for h in tracker.snapshot("team-a")] == ["healthy"]
    assert [held.labels for held in alerts.firing.values()] == [{
        "alertname": "ServiceUnhealthy", "severity": "critical", "service": "billing",
        "instance": "b-1", "tenant": "team-b"}]
    samples = {(s.labels["tenant"], s.labels["status"]): s.value
               for family in tracker.collect() if family.name == "flext_service_health_status"
               for s in family.samples}
    assert samples[("team-a", "healthy")] == samples[("team-b", "unhealthy")] == 1
    restarted, _ = make(clocks)
    restarted.restore(list(tracker.changes().items()))
    assert {(h["tenant"], h["status"]) for h in restarted.snapshot()} == {
        ("team-a", "healthy"), ("team-b", "unhealthy")}


def test_a_row_without_a_tenant_loads(clocks):
    row = orjson.dumps({"service": "old", "instance": "", "status": "healthy", "checks": {},
                        "reported_at": clocks.wall, "received": clocks.wall, "ttl": 60.0,
                        "alerted": "healthy"})
    tracker, _ = make(clocks)
    tracker.restore([(orjson.dumps(["old", ""]), row)])
    assert [(h["service"], "tenant" in h) for h in tracker.snapshot()] == [("old", False)]


def test_new_services_past_the_limit_are_not_admitted(clocks):
    tracker, _ = make(clocks)
    tracker.max_services = 2
    first = [{"service": "a"}, {"service": "b"}]
    assert tracker.admit(first) == []
    # Admitted, not applied yet: they count.
    errors = tracker.admit([{"service": "a"}, {"service": "c"}])
    assert [(e.index, e.field) for e in errors] == [(1, "service")]
    assert "health.max_services=2" in errors[0].message
    tracker.handle([Record(next(SEQ), Signal.HEALTH, "native-json", orjson.dumps(
        [{**r, "status": "healthy"} for r in first]), 2)])
    assert tracker.admit([{"service": "b", "tenant": ""}]) == []
    assert tracker.admit([{"service": "c"}])
    # Another tenant has a limit of its own: the first tenant at its limit keeps none out.
    assert tracker.admit([{"service": "b", "tenant": "other"},
                          {"service": "c", "tenant": "other"}]) == []
    errors = tracker.admit([{"service": "d", "tenant": "other"}])
    assert "2 services of this tenant are held" in errors[0].message


def test_services_admitted_but_not_queued_are_released(clocks):
    tracker, alerts = make(clocks)
    tracker.max_services = 1
    alerts.max_alerts = 1
    assert tracker.admit([{"service": "a"}]) == []
    assert tracker.admit([{"service": "b"}])
    tracker.release([{"service": "a"}])  # e.g. the queue was full
    assert tracker.admit([{"service": "b"}]) == []
    alert = {"name": "A", "severity": "warning", "service": "s"}
    assert alerts.admit([alert]) == []
    assert alerts.admit([{**alert, "name": "B"}])
    alerts.release([alert])
    assert alerts.admit([{**alert, "name": "B"}]) == []
