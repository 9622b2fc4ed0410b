"""One health report shape over HTTP, the CLI and the SDK, against the real daemon: a check is a
status string or `{status, message, observed_value}`; `status` defaults to the worst check."""

import subprocess
import sys

import httpx

from flext_observability import FlextObservabilityConfig, FlextObservabilityMasterFactory
from helpers.procs import poll

CLI = [sys.executable, "-m", "flext_observability"]


def services(daemon):
    return {
        s["service"]: s
        for s in httpx.get(f"{daemon.url}/api/v1/health", timeout=10).json()["services"]
    }


def wait_service(daemon, name):
    return poll(lambda: services(daemon), lambda found: name in found, 10, 0.05, name)[name]


def test_both_check_shapes_over_http_with_the_worst_as_default_status(daemon_factory):
    daemon = daemon_factory()
    reports = [
        {"service": "strings", "checks": {"db": "healthy", "cache": "degraded"}},
        {"service": "objects", "checks": {
            "db": {"status": "unhealthy", "message": "refused", "observed_value": 3},
            "cache": "healthy"}},
        {"service": "explicit", "status": "healthy", "checks": {"db": "degraded"}},
        {"service": "bare"},
    ]
    for report in reports:
        answer = httpx.post(f"{daemon.url}/api/v1/health", json=report, timeout=10)
        assert answer.status_code == 202, (report, answer.text)
    assert wait_service(daemon, "strings")["status"] == "degraded"
    objects = wait_service(daemon, "objects")
    assert objects["status"] == "unhealthy"
    assert objects["checks"]["db"] == {"status": "unhealthy", "message": "refused",
                                       "observed_value": 3}
    assert objects["checks"]["cache"]["status"] == "healthy"
    assert wait_service(daemon, "explicit")["status"] == "healthy"
    assert wait_service(daemon, "bare")["status"] == "healthy"

    bad = httpx.post(f"{daemon.url}/api/v1/health",
                     json={"service": "x", "checks": {"db": "fine"}}, timeout=10)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"].startswith("checks.db")


def test_cli_takes_checks_name_equals_status(daemon_factory):
    daemon = daemon_factory()
    sent = subprocess.run(
        [*CLI, "send", "health", "service=cli", "checks.db=healthy", "checks.queue=degraded",
         "checks.disk.status=unhealthy", "checks.disk.message=97% full",
         "--endpoint", daemon.url],
        capture_output=True, text=True, timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    cli = wait_service(daemon, "cli")
    assert cli["status"] == "unhealthy"
    assert {name: check["status"] for name, check in cli["checks"].items()} == {
        "db": "healthy", "queue": "degraded", "disk": "unhealthy"}
    assert cli["checks"]["disk"]["message"] == "97% full"


def test_sdk_sends_the_same_shapes(daemon_factory):
    daemon = daemon_factory()
    factory = FlextObservabilityMasterFactory(FlextObservabilityConfig(
        endpoint=daemon.url, service_name="sdk", flush_interval=0.1))
    try:
        assert factory.health.report(checks={"db": "healthy", "cache": {
            "status": "degraded", "message": "slow"}}).is_success
        assert factory.flush(10)
    finally:
        factory.close(timeout=1)
    sdk = wait_service(daemon, "sdk")
    assert sdk["status"] == "degraded"
    assert sdk["checks"]["cache"]["message"] == "slow"
