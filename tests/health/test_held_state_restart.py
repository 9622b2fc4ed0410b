"""Health and alerts held by the daemon survive kill -9 right after the 202s (their rows
are checkpointed with the queue cursors, or replayed from the queue)."""

import httpx

from helpers.procs import poll


def post(daemon, signal, items):
    answer = httpx.post(f"{daemon.url}/api/v1/{signal}", json=items, timeout=10)
    assert answer.status_code == 202, answer.text


def held(daemon):
    health = httpx.get(f"{daemon.url}/api/v1/health", timeout=10).json()["services"]
    alerts = httpx.get(f"{daemon.url}/api/v1/alerts", timeout=10).json()["alerts"]
    return ({(h["service"], h["instance"], h["reported_status"]) for h in health},
            {a["labels"]["alertname"] for a in alerts})


EXPECTED = ({("billing", "b-1", "unhealthy"), ("search", "", "healthy")},
            {"DiskFull", "ServiceUnhealthy"})


def test_health_and_alerts_survive_kill_9_and_a_clean_restart(daemon_factory):
    daemon = daemon_factory()
    post(daemon, "health", [{"service": "billing", "instance": "b-1", "status": "unhealthy"},
                            {"service": "search", "status": "healthy"}])
    post(daemon, "alerts", {"name": "DiskFull", "severity": "critical", "service": "db",
                            "status": "firing", "summary": "disk full"})
    daemon.kill9()
    daemon.start()
    poll(lambda: held(daemon), lambda state: state == EXPECTED, 20, 0.1, "held after kill -9")
    post(daemon, "alerts", {"name": "DiskFull", "severity": "critical", "service": "db",
                            "status": "resolved"})
    poll(lambda: held(daemon)[1], lambda names: names == {"ServiceUnhealthy"}, 20, 0.1,
         "resolved")
    daemon.restart()
    assert held(daemon) == (EXPECTED[0], {"ServiceUnhealthy"})
