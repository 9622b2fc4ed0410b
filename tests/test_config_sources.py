"""Config as a user writes it, through `check-config` and `serve`: lists from the environment
in comma-separated form, compound durations, strict numbers, unset variables; every error
names where it came from (the file and YAML path, or the variable), never a traceback."""

import os
import subprocess
import sys

import httpx

from helpers.procs import free_ports, wait_http

CLI = [sys.executable, "-m", "flext_observability"]


def check(tmp_path, text, **env):
    path = tmp_path / "collector.yaml"
    path.write_text(text)
    result = subprocess.run([*CLI, "check-config", str(path)], capture_output=True, text=True,
                            timeout=60, env={**os.environ, **env})
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return path, result


def test_comma_separated_lists_from_the_environment(tmp_path):
    _, ok = check(tmp_path, "{}\n",
                  FLEXT_OBS_EXPORTERS__ALERTMANAGER__URLS="http://a:9093, http://b:9093",
                  FLEXT_OBS_SERVER__CORS__ALLOWED_ORIGINS='["https://app.example.com"]')
    assert ok.returncode == 0, ok.stdout
    _, bad = check(tmp_path, "{}\n", FLEXT_OBS_EXPORTERS__ALERTMANAGER__URLS="http://a:9093,b")
    assert bad.returncode == 2
    assert bad.stdout.startswith(
        "FLEXT_OBS_EXPORTERS__ALERTMANAGER__URLS (exporters.alertmanager.urls.1): 'b' is not"
    ), bad.stdout


def test_serve_uses_every_url_of_a_comma_separated_variable(tmp_path, process_reaper):
    from helpers.procs import ManagedProcess

    http, grpc, a, b = free_ports(4)
    urls = [f"http://127.0.0.1:{a}", f"http://127.0.0.1:{b}"]
    daemon = ManagedProcess(
        [*CLI, "serve"], tmp_path, "daemon",
        env={"FLEXT_OBS_SERVER__HTTP_PORT": str(http), "FLEXT_OBS_SERVER__GRPC_PORT": str(grpc),
             "FLEXT_OBS_QUEUE__KIND": "memory",
             "FLEXT_OBS_EXPORTERS__ALERTMANAGER__URLS": ",".join(urls)},
    )
    process_reaper.append(daemon)
    daemon.start()
    wait_http(f"http://127.0.0.1:{http}/healthz", process=daemon)
    state = httpx.get(f"http://127.0.0.1:{http}/readyz", timeout=10).json()["exporters"]
    assert sorted(state["alertmanager"]) == sorted(urls)


def test_errors_name_the_file_or_the_variable(tmp_path):
    path, result = check(tmp_path, "queue: {max_items: 0}\n", FLEXT_OBS_SERVER__HTTP_PORT="-1")
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert f"{path}: queue.max_items: Input should be greater than 0" in lines
    assert any(line.startswith("FLEXT_OBS_SERVER__HTTP_PORT (server.http_port): ")
               for line in lines), lines


def test_compound_durations_are_accepted(tmp_path):
    from flext_observability.config import load_config

    path, result = check(tmp_path, "server: {read_timeout: 1m30s}\n"
                                   "exporters: {prometheus: {metric_expiration: 1h5m10s}}\n")
    assert result.returncode == 0, result.stdout
    config = load_config(path)
    assert config.server.read_timeout == 90
    assert config.exporters.prometheus.metric_expiration == 3910


def test_numbers_are_strict(tmp_path):
    path, result = check(tmp_path, "server: {workers: true}\nqueue: {signal_share: yes}\n")
    assert result.returncode == 2
    text = result.stdout
    assert f"{path}: server.workers: Input should be a valid integer" in text
    assert f"{path}: queue.signal_share:" in text
    _, env = check(tmp_path, "{}\n", FLEXT_OBS_SERVER__WORKERS="true")
    assert env.returncode == 2
    assert env.stdout.startswith("FLEXT_OBS_SERVER__WORKERS (server.workers):")


def test_an_unset_variable_is_named(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FLEXT_TEST_UNSET_HOST"}
    path = tmp_path / "collector.yaml"
    path.write_text("server: {host: '${FLEXT_TEST_UNSET_HOST}'}\n")
    result = subprocess.run([*CLI, "check-config", str(path)], capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 2
    assert "${FLEXT_TEST_UNSET_HOST} is not set" in result.stdout
    assert f"{path}: server.host:" in result.stdout
    _, defaulted = check(tmp_path, "server: {host: '${FLEXT_TEST_UNSET_HOST:-0.0.0.0}'}\n")
    assert defaulted.returncode == 0, defaulted.stdout


def test_an_empty_token_variable_is_named(tmp_path):
    path, result = check(tmp_path, "server: {auth: {tokens: ['${FLEXT_TEST_TOKEN}']}}\n",
                         FLEXT_TEST_TOKEN="")
    assert result.returncode == 2
    assert f"{path}: server.auth.tokens.0" in result.stdout
    assert "${FLEXT_TEST_TOKEN}, which is empty" in result.stdout


def test_a_config_file_with_a_moved_key_starts_warning_once_and_the_key_holds(daemon_factory):
    daemon = daemon_factory({"server": {"max_items_per_request": 2}, "queue": {"kind": "memory"}})
    warnings = [line for line in daemon.log_tail(200).splitlines()
                if "server.max_items_per_request is deprecated" in line]
    assert len(warnings) == 1
    assert "WARNING" in warnings[0]
    assert "read as limits.max_items_per_request" in warnings[0]
    metrics = [{"name": "moved_key", "type": "gauge", "value": 1, "service": "s",
                "labels": {"n": str(n)}}
               for n in range(3)]
    accepted = httpx.post(f"{daemon.url}/api/v1/metrics", json=metrics[:2], timeout=10)
    assert accepted.status_code == 202, accepted.text
    refused = httpx.post(f"{daemon.url}/api/v1/metrics", json=metrics, timeout=10)
    assert refused.status_code == 413
    assert "limits.max_items_per_request is 2" in refused.text
