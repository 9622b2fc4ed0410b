"""Small things an operator meets first, against the real daemon: HEAD on the probes, no log
line per export request, `# UNIT` for native units, the examples outside the venv."""

import os
import subprocess
import sys

import httpx
import pytest

from helpers.procs import REPO_ROOT, poll

OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}


@pytest.mark.parametrize("workers", [0, 1], ids=["one-process", "1-worker"])
def test_head_on_the_probes(daemon_factory, workers):
    daemon = daemon_factory({"server": {"workers": workers}})
    for path in ("/readyz", "/healthz"):
        answer = httpx.head(f"{daemon.url}{path}", timeout=10)
        assert answer.status_code == 200, (path, answer.status_code)
        assert answer.content == b""


def test_native_unit_is_a_unit_line_in_openmetrics(daemon_factory):
    daemon = daemon_factory()
    items = [
        {"name": "job_duration_seconds", "type": "histogram", "value": 0.5, "unit": "s",
         "service": "cron", "buckets": [1]},
        {"name": "payload_bytes", "type": "gauge", "value": 9, "unit": "By", "service": "cron"},
        {"name": "queue_depth", "type": "gauge", "value": 3, "unit": "{items}",
         "service": "cron"},
    ]
    assert httpx.post(f"{daemon.url}/api/v1/metrics", json=items, timeout=10).status_code == 202
    text = poll(lambda: httpx.get(f"{daemon.url}/metrics", headers=OPENMETRICS, timeout=10).text,
                lambda t: "queue_depth{" in t, 10, 0.05, "the three metrics")
    assert "# UNIT job_duration_seconds seconds" in text
    assert "# UNIT payload_bytes bytes" in text
    assert "# UNIT queue_depth" not in text


def test_no_log_line_per_export_request(daemon_factory, alertmanager):
    daemon = daemon_factory({"exporters": {"alertmanager": {"urls": [alertmanager.url],
                                                            "resend_interval": 1}}})
    answer = httpx.post(f"{daemon.url}/api/v1/alerts", json={"name": "Quiet", "service": "s"},
                        timeout=10)
    assert answer.status_code == 202
    alertmanager.wait_for(bool, timeout=15, filter=['alertname="Quiet"'])
    poll(lambda: alertmanager.alerts(filter=['alertname="Quiet"'])[0]["endsAt"],
         lambda end: end != "", 5, 0.5, "re-sent")
    assert "HTTP Request:" not in daemon.log_tail(1000)


def test_examples_outside_the_venv_say_to_use_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    for example in ("worker.py", "health_reporter.py", "threshold_alert.py"):
        # -S: no site-packages, as with a Python that does not have the package installed.
        result = subprocess.run([sys.executable, "-S", str(REPO_ROOT / "examples" / example)],
                                capture_output=True, text=True, timeout=60, cwd=tmp_path,
                                env=env)
        assert result.returncode != 0
        assert f".venv/bin/python examples/{example}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
