"""Times as users write them (RFC 3339, Unix seconds, Unix nanoseconds) against the real daemon:
understood, or refused with the field and the accepted forms; never read as 1970, never a 500.
The read APIs show every time as RFC 3339."""

from datetime import UTC, datetime

import httpx

from helpers.exposition import sample
from helpers.procs import poll

SECONDS = 1_795_773_000  # 2026-11-27T09:50:00Z
RFC = "2026-11-27T09:50:00"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def post(daemon, kind, body):
    return httpx.post(f"{daemon.url}/api/v1/{kind}", json=body, timeout=10)


def read(daemon, kind):
    return httpx.get(f"{daemon.url}/api/v1/{kind}", timeout=10).json()


def is_rfc3339(value):
    return isinstance(value, str) and value.endswith("Z") and datetime.fromisoformat(value)


def test_alert_starts_at_in_seconds_reaches_alertmanager_as_that_time(
    daemon_factory, alertmanager
):
    daemon = daemon_factory({"exporters": {"alertmanager": {"urls": [alertmanager.url]}}})
    answer = post(daemon, "alerts", {"name": "InSeconds", "service": "db",
                                     "starts_at": SECONDS})
    assert answer.status_code == 202, answer.text
    (got,) = alertmanager.wait_for(bool, timeout=15, filter=['alertname="InSeconds"'])
    assert got["startsAt"].startswith(RFC)
    (held,) = read(daemon, "alerts")["alerts"]
    assert held["starts_at"] == f"{RFC}.000000Z"
    assert held["ends_at"] is None
    assert is_rfc3339(held["updated"])


def test_health_timestamp_in_seconds_is_that_time_in_api_and_metrics(daemon_factory):
    daemon = daemon_factory()
    for stamp in (SECONDS, SECONDS + 0.5, f"{RFC}Z", SECONDS * 10**9):
        answer = post(daemon, "health", {"service": "api", "status": "healthy",
                                         "timestamp": stamp})
        assert answer.status_code == 202, (stamp, answer.text)
    (service,) = poll(lambda: read(daemon, "health")["services"], bool, 10, 0.05, "health")
    assert service["last_report"] == f"{RFC}.000000Z"
    text = httpx.get(f"{daemon.url}/metrics", timeout=10).text
    assert sample(text, "flext_service_health_last_report_timestamp_seconds",
                  service="api") == SECONDS


def test_metric_timestamps_in_seconds_are_accepted(daemon_factory):
    daemon = daemon_factory()
    for stamp in (SECONDS, SECONDS + 0.25, SECONDS * 10**9, f"{RFC}+00:00"):
        answer = post(daemon, "metrics", {"name": "jobs", "type": "gauge", "value": 1,
                                          "service": "s", "timestamp": stamp})
        assert answer.status_code == 202, (stamp, answer.text)


def span(**fields):
    now = SECONDS * 10**9
    return {"trace_id": TRACE, "span_id": "00f067aa0ba902b7", "name": "op", "service": "s",
            "start_time": now, "end_time": now + 1000, **fields}


REFUSED = [
    # (route, item, field): ambiguous, 1970 or past 64 bits
    ("alerts", {"name": "A", "service": "s", "starts_at": SECONDS * 1000}, "starts_at"),
    ("alerts", {"name": "A", "service": "s", "starts_at": 2**64}, "starts_at"),
    ("alerts", {"name": "A", "service": "s", "ends_at": 5}, "ends_at"),
    ("alerts", {"name": "A", "service": "s", "starts_at": True}, "starts_at"),
    ("health", {"service": "s", "status": "healthy", "timestamp": 2**64}, "timestamp"),
    ("health", {"service": "s", "status": "healthy", "timestamp": 2**70}, "timestamp"),
    ("health", {"service": "s", "status": "healthy", "timestamp": SECONDS * 10**6},
     "timestamp"),
    ("health", {"service": "s", "status": "healthy", "timestamp": "9999-01-01T00:00:00Z"},
     "timestamp"),
    ("metrics", {"name": "m", "type": "gauge", "value": 1, "service": "s",
                 "timestamp": SECONDS * 1000}, "timestamp"),
    ("metrics", {"name": "m", "type": "gauge", "value": 1, "service": "s",
                 "timestamp": 2**64}, "timestamp"),
    ("metrics", {"name": "m", "type": "gauge", "value": 1, "service": "s",
                 "timestamp": 1e300}, "timestamp"),
    ("spans", span(end_time=2**64), "end_time"),
    ("spans", span(start_time=1_000), "start_time"),
    ("spans", span(events=[{"name": "e", "time": SECONDS * 1000}]), "events.0.time"),
]


def test_ambiguous_or_out_of_range_times_are_refused_naming_the_field(daemon_factory):
    daemon = daemon_factory()
    for route, item, field in REFUSED:
        answer = post(daemon, route, item)
        assert answer.status_code == 422, (item, answer.text)
        (error,) = answer.json()["errors"]
        assert error["field"] == field, (item, error)
        for words in ("RFC 3339", "seconds", "nanoseconds"):
            assert words in error["message"], (item, error)


def test_read_apis_show_every_time_as_rfc3339(daemon_factory):
    daemon = daemon_factory()
    assert post(daemon, "alerts", {"name": "Now", "service": "s"}).status_code == 202
    assert post(daemon, "alerts", {"name": "Then", "service": "s", "status": "resolved",
                                   "starts_at": SECONDS, "ends_at": SECONDS + 60}
                ).status_code == 202
    assert post(daemon, "health", {"service": "s", "status": "healthy"}).status_code == 202
    (alert,) = poll(lambda: read(daemon, "alerts")["alerts"], bool, 10, 0.05, "alert held")
    for key in ("starts_at", "updated"):
        assert is_rfc3339(alert[key]), alert
        moment = datetime.fromisoformat(alert[key])
        assert abs((moment - datetime.now(UTC)).total_seconds()) < 60
    (health,) = poll(lambda: read(daemon, "health")["services"], bool, 10, 0.05, "health")
    assert is_rfc3339(health["last_report"]), health
