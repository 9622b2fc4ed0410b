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
