"""The process helpers against real Prometheus, Alertmanager and Pushgateway binaries."""

from __future__ import annotations

import signal
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml

from helpers.procs import Daemon, ManagedProcess, deep_merge, free_port, http_get

pytestmark = pytest.mark.integration

# A stand-in for a server under test: serves GET on the host/port of its --config
# file, answering with the config it read and its environment. argv[1] says what
# SIGTERM does: "exit0" (a clean drain), "ignore" (a hung process) or "ignore-all" (one
# that ignores SIGABRT too).
STANDIN = """
import json, os, signal, sys, yaml
from http.server import BaseHTTPRequestHandler, HTTPServer

config = yaml.safe_load(open(sys.argv[sys.argv.index("--config") + 1]))
if sys.argv[1].startswith("ignore"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.argv[1] == "ignore-all":
        signal.signal(signal.SIGABRT, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"config": config, "env": dict(os.environ)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print("standin serving", flush=True)
server = config["server"]
HTTPServer((server["host"], server["http_port"]), Handler).serve_forever()
"""


def standin(tmp_path, on_term: str) -> ManagedProcess:
    port = free_port()
    config_path = tmp_path / f"standin-{on_term}.yaml"
    config_path.write_text(yaml.safe_dump({"server": {"host": "127.0.0.1", "http_port": port}}))
    return ManagedProcess(
        [sys.executable, "-c", STANDIN, on_term, "--config", config_path],
        tmp_path,
        f"standin-{on_term}",
        ready_url=f"http://127.0.0.1:{port}/healthz",
    )


@pytest.mark.parametrize(
    ("honor_labels", "selector"),
    [
        (True, '{job="probe", kind="helper"}'),
        (False, '{job="flext", exported_job="probe", kind="helper"}'),
    ],
)
def test_prometheus_scrapes_a_pushed_metric(
    pushgateway, prometheus_factory, honor_labels, selector
):
    pushed = httpx.put(
        f"{pushgateway.url}/metrics/job/probe",
        content='# TYPE flext_helper_probe gauge\nflext_helper_probe{kind="helper"} 42.5\n',
        trust_env=False,
    )
    assert pushed.status_code == 200, pushed.text

    prometheus = prometheus_factory([pushgateway.url], honor_labels=honor_labels)
    result = prometheus.wait_for(f"flext_helper_probe{selector}")

    assert [sample["value"][1] for sample in result] == ["42.5"]
    assert [target["health"] for target in prometheus.targets()] == ["up"]
    assert prometheus.alerts() == []


def test_prometheus_query_error_is_raised_not_retried(pushgateway, prometheus_factory):
    prometheus = prometheus_factory([pushgateway.url])

    with pytest.raises(RuntimeError, match="parse error"):
        prometheus.wait_for("sum(", timeout=60)


def alertmanager_alert(name: str, ends_at: datetime) -> dict:
    return {
        "labels": {"alertname": name, "severity": "warning", "service": "helpers"},
        "annotations": {"summary": "probe from the test helpers"},
        "startsAt": (ends_at - timedelta(minutes=10)).isoformat(),
        "endsAt": ends_at.isoformat(),
    }


def test_alertmanager_lists_a_posted_alert_until_it_is_resolved(alertmanager):
    now = datetime.now(UTC)
    for ends_at in (now + timedelta(minutes=5), now - timedelta(seconds=1)):
        posted = httpx.post(
            f"{alertmanager.url}/api/v2/alerts",
            json=[alertmanager_alert("HelperProbe", ends_at)],
            trust_env=False,
        )
        assert posted.status_code == 200, posted.text

        if ends_at > now:
            (alert,) = alertmanager.wait_for(filter=['alertname="HelperProbe"'])
            assert alert["labels"]["service"] == "helpers"
            assert alert["annotations"] == {"summary": "probe from the test helpers"}
            assert alert["status"]["state"] in {"active", "unprocessed"}

    # Resolved alerts (endsAt in the past) are not listed by GET /api/v2/alerts.
    assert alertmanager.wait_for(lambda alerts: not alerts) == []


def test_stop_sends_sigterm_and_is_safe_twice(tmp_path):
    process = standin(tmp_path, "exit0")
    assert process.stop() is None  # never started

    process.start()
    assert process.running
    assert process.stop() == 0
    assert process.stop() == 0
    assert process.returncode == 0
    assert "standin serving" in process.log_tail(5)


def test_stop_escalates_to_sigabrt_when_sigterm_is_ignored(tmp_path):
    """A hung daemon gets SIGABRT: with PYTHONFAULTHANDLER (set for every Daemon), its
    threads' stacks are in its log."""
    process = standin(tmp_path, "ignore").start()

    assert process.stop(timeout=0.3) == -signal.SIGABRT


def test_stop_escalates_to_sigkill_when_sigabrt_is_ignored_too(tmp_path):
    process = standin(tmp_path, "ignore-all").start()

    assert process.stop(timeout=0.3) == -signal.SIGKILL


def test_a_daemon_not_gone_in_time_leaves_its_stacks_in_its_log(tmp_path):
    daemon = Daemon(tmp_path / "daemon").start()

    # No time to drain after SIGTERM: SIGABRT, which its faulthandler answers.
    assert daemon.stop(timeout=0) == -signal.SIGABRT
    assert "most recent call first" in daemon.log_tail(400)


def test_kill9_crashes_the_process(tmp_path):
    process = standin(tmp_path, "exit0").start()

    process.kill9()
    process.kill9()

    assert process.returncode == -signal.SIGKILL
    assert process.stop() == -signal.SIGKILL


@pytest.mark.parametrize(
    ("argv", "ready_timeout", "message"),
    [
        (["import sys; print('boom', file=sys.stderr); sys.exit(3)"], 20, "exited with 3"),
        (["import time; print('boom', flush=True); time.sleep(60)"], 0.3, "not ready after"),
    ],
)
def test_start_fails_with_the_log_tail_and_leaves_nothing_running(
    tmp_path, argv, ready_timeout, message
):
    process = ManagedProcess(
        [sys.executable, "-c", *argv],
        tmp_path,
        "broken",
        ready_url=f"http://127.0.0.1:{free_port()}/healthz",
        ready_timeout=ready_timeout,
    )

    with pytest.raises(RuntimeError, match=message) as raised:
        process.start()

    assert "boom" in str(raised.value)
    assert not process.running


def test_daemon_writes_merged_config_and_restarts_on_the_same_ports(tmp_path):
    daemon = Daemon(
        tmp_path / "d",
        config_overrides={"server": {"max_body_bytes": 1024}, "health": {"default_ttl_seconds": 5}},
        env={"FLEXT_OBS_TEST_MARK": "yes"},
        command=[sys.executable, "-c", STANDIN, "exit0"],
    )
    try:
        daemon.start()
        seen = http_get(f"{daemon.url}/healthz").json()
        assert seen["config"] == daemon.config
        assert seen["config"]["server"]["max_body_bytes"] == 1024
        assert seen["config"]["queue"] == {"kind": "disk", "path": str(tmp_path / "d" / "data")}
        assert seen["env"]["FLEXT_OBS_TEST_MARK"] == "yes"
        assert daemon.grpc_target == f"127.0.0.1:{daemon.config['server']['grpc_port']}"

        url = daemon.url
        daemon.kill9()
        daemon.restart()
        assert daemon.url == url
        assert http_get(f"{daemon.url}/healthz").status_code == 200
        assert daemon.stop() == 0
    finally:
        daemon.stop()


@pytest.mark.parametrize(
    ("base", "overrides", "expected"),
    [
        ({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}, {"a": {"b": 1, "c": 3}}),
        ({"a": {"b": 1}}, {"a": 5}, {"a": 5}),
        ({"a": [1]}, {"a": [2]}, {"a": [2]}),
        ({}, {"x": {"y": 1}}, {"x": {"y": 1}}),
    ],
)
def test_deep_merge(base, overrides, expected):
    assert deep_merge(base, overrides) == expected
