"""The command line: check-config, serve's refusal of a bad config, send, and SIGTERM."""

import subprocess
import sys

import httpx

from helpers.procs import poll

CLI = [sys.executable, "-m", "flext_observability"]


def run(*args, **kwargs):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, **kwargs)


def test_check_config_accepts_the_shipped_example():
    result = run("check-config", "config/collector.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_config_prints_every_error_with_its_yaml_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("server:\n  http_port: -1\nqueue:\n  kind: tape\nexporters:\n  nope: {}\n")
    result = run("check-config", str(path))
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{path}: server.http_port:") for line in lines)
    assert any(line.startswith(f"{path}: queue.kind:") for line in lines)
    assert any(line.startswith(f"{path}: exporters.nope: unknown key") for line in lines)


def test_serve_refuses_an_invalid_config(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("queue: {max_items: 0}\n")
    result = run("serve", "--config", str(path))
    assert result.returncode == 2
    assert "queue.max_items" in result.stderr


def test_send_posts_one_item_and_reports_refusals(daemon_factory):
    daemon = daemon_factory()
    ok = run("send", "metric", "name=jobs_done", "type=counter", "value=2", "service=cron",
             "labels.queue=default", "--endpoint", daemon.url)
    assert ok.returncode == 0, ok.stderr
    assert "accepted: 1" in ok.stdout
    poll(lambda: httpx.get(f"{daemon.url}/metrics").text,
         lambda t: 'jobs_done_total{job="cron",queue="default"} 2.0' in t, 10, 0.05, "sent")
    bad = run("send", "metric", "name=jobs_done", "type=counter", "value=-1", "service=cron",
              "--endpoint", daemon.url)
    assert bad.returncode == 1
    assert "value: a counter increment must be >= 0" in bad.stderr
    health = run("send", "health", "--json", '{"service": "cron", "status": "healthy"}',
                 "--endpoint", daemon.url)
    assert health.returncode == 0, health.stderr


def test_sigterm_drains_and_exits_zero(daemon_factory):
    daemon = daemon_factory()
    answer = httpx.post(f"{daemon.url}/api/v1/metrics",
                        json={"name": "x", "type": "gauge", "value": 1, "service": "s"})
    assert answer.status_code == 202
    assert daemon.stop() == 0
    assert "collector stopped" in daemon.log_tail()
