"""The SDK's environment, as a user sets it: a service process sends to a real collector that
requires a token, and what arrives shows which settings the SDK kept.

One invalid `FLEXT_OBS_*` variable must not make the SDK drop the others (issue 19 item 3):
it is skipped, named in one warning, and the service name, token and endpoint still hold.
An endpoint without a scheme gets `http://`; `OTEL_SERVICE_NAME` and
`OTEL_EXPORTER_OTLP_ENDPOINT` apply where no `FLEXT_OBS_*` variable is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers.procs import Daemon, http_get, poll

pytestmark = pytest.mark.integration

TOKEN = "sdk-env-token-0123456789"
TENANT = "team-env"
PROBE = '''
from flext_observability import FlextMetricsService
assert FlextMetricsService().record_metric_sync("env_probe", {value}).is_success
'''


@pytest.fixture(scope="module")
def collector(tmp_path_factory) -> Iterator[Daemon]:
    daemon = Daemon(tmp_path_factory.mktemp("sdk-env"), {
        "server": {"auth": {"tokens": [{"token": TOKEN, "tenant": TENANT}]}},
    })
    daemon.start()
    yield daemon
    daemon.stop()


def run_service(tmp_path, value: float, **variables: str) -> str:
    """Run a service that records `env_probe` = value; its stderr (the SDK's warnings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEXT_OBS_", "OTEL_"))}
    env.update(FLEXT_OBS_EXIT_FLUSH_DEADLINE="10", **variables)
    done = subprocess.run([sys.executable, "-c", PROBE.format(value=value)], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stderr


def probe(url: str, value: float) -> dict[str, str] | None:
    """The labels of the `env_probe` sample equal to `value`, None until it arrived."""
    for family in text_string_to_metric_families(http_get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == "env_probe" and sample.value == value:
                return sample.labels
    return None


def arrived(url: str, value: float) -> dict[str, str]:
    return poll(lambda: probe(url, value), lambda labels: labels is not None, 20, 0.1,
                f"env_probe == {value} on /metrics")


def no_scheme(url: str) -> str:
    return url.removeprefix("http://")


def test_a_bad_variable_beside_good_ones_keeps_the_good_ones(collector, tmp_path):
    stderr = run_service(
        tmp_path, 1,
        FLEXT_OBS_ENDPOINT=collector.url, FLEXT_OBS_SERVICE_NAME="env-kept",
        FLEXT_OBS_TOKEN=TOKEN, FLEXT_OBS_BATCH_SIZE="many",
    )
    labels = arrived(collector.url, 1)
    assert (labels["job"], labels["tenant"]) == ("env-kept", TENANT)
    (warning,) = [line for line in stderr.splitlines() if "FLEXT_OBS_" in line]
    assert "FLEXT_OBS_BATCH_SIZE is invalid (batch_size:" in warning
    assert TOKEN not in stderr


def test_an_endpoint_without_a_scheme_gets_http(collector, tmp_path):
    stderr = run_service(
        tmp_path, 2,
        FLEXT_OBS_ENDPOINT=no_scheme(collector.url), FLEXT_OBS_SERVICE_NAME="env-no-scheme",
        FLEXT_OBS_TOKEN=TOKEN,
    )
    assert arrived(collector.url, 2)["job"] == "env-no-scheme"
    assert "invalid" not in stderr


def test_opentelemetry_variables_where_no_flext_obs_one_is_set(collector, tmp_path):
    run_service(
        tmp_path, 3,
        OTEL_SERVICE_NAME="env-otel", OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        FLEXT_OBS_TOKEN=TOKEN,
    )
    labels = arrived(collector.url, 3)
    assert (labels["job"], labels["tenant"]) == ("env-otel", TENANT)


def test_flext_obs_variables_win_over_opentelemetry_ones(collector, tmp_path):
    run_service(
        tmp_path, 4,
        FLEXT_OBS_SERVICE_NAME="env-flext", OTEL_SERVICE_NAME="env-otel-loses",
        FLEXT_OBS_ENDPOINT=collector.url, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        FLEXT_OBS_TOKEN=TOKEN,
    )
    assert arrived(collector.url, 4)["job"] == "env-flext"


def test_a_bad_flext_obs_endpoint_falls_back_to_the_opentelemetry_one(collector, tmp_path):
    stderr = run_service(
        tmp_path, 5,
        FLEXT_OBS_ENDPOINT="ftp://nowhere:21", OTEL_EXPORTER_OTLP_ENDPOINT=no_scheme(collector.url),
        FLEXT_OBS_SERVICE_NAME="env-fallback", FLEXT_OBS_TOKEN=TOKEN,
    )
    labels = arrived(collector.url, 5)
    assert (labels["job"], labels["tenant"]) == ("env-fallback", TENANT)
    (warning,) = [line for line in stderr.splitlines() if "FLEXT_OBS_ENDPOINT" in line]
    assert "using OTEL_EXPORTER_OTLP_ENDPOINT instead" in warning
