"""FlextObservabilityConfig: FLEXT_OBS_* fields, defaults, and the daemon's variables ignored."""

from __future__ import annotations

import sys

import pytest
from pydantic import ValidationError

from flext_observability import FlextObservabilityConfig
from flext_observability.sdk.config import config_from_env, default_service_name


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("ENDPOINT", "TOKEN", "SERVICE_NAME", "BATCH_SIZE", "INSTANCE"):
        monkeypatch.delenv(f"FLEXT_OBS_{name}", raising=False)


def test_defaults():
    config = FlextObservabilityConfig()
    assert config.endpoint == "http://127.0.0.1:4318"
    assert config.token is None
    assert (config.batch_size, config.buffer_limit) == (512, 10_000)
    assert (config.flush_interval, config.exit_flush_deadline) == (1.0, 2.0)
    assert config.service_name == default_service_name()


def test_environment(monkeypatch):
    monkeypatch.setenv("FLEXT_OBS_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("FLEXT_OBS_TOKEN", "s3cret")
    monkeypatch.setenv("FLEXT_OBS_SERVICE_NAME", "billing")
    monkeypatch.setenv("FLEXT_OBS_BATCH_SIZE", "64")
    config = FlextObservabilityConfig()
    assert (config.endpoint, config.service_name, config.batch_size) == (
        "http://collector:4318", "billing", 64,
    )
    assert config.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)


def test_the_daemons_variables_are_ignored(monkeypatch):
    monkeypatch.setenv("FLEXT_OBS_SERVER__HTTP_PORT", "9999")
    monkeypatch.setenv("FLEXT_OBS_QUEUE__KIND", "memory")
    monkeypatch.setenv("FLEXT_OBS_EXPORTERS__JAEGER__ENDPOINT", "http://jaeger:4317")
    monkeypatch.setenv("FLEXT_OBS_NOT_A_FIELD", "x")
    assert FlextObservabilityConfig().endpoint == "http://127.0.0.1:4318"


@pytest.mark.parametrize(
    ("field", "value"),
    [("endpoint", "collector:4318"), ("batch_size", 0), ("buffer_limit", -1),
     ("flush_interval", 0), ("service_name", ""), ("exit_flush_deadline", -1)],
)
def test_invalid_values_are_refused(field, value):
    with pytest.raises(ValidationError, match=field):
        FlextObservabilityConfig(**{field: value})


def test_invalid_environment_falls_back_to_defaults(monkeypatch, caplog):
    monkeypatch.setenv("FLEXT_OBS_BATCH_SIZE", "many")
    config = config_from_env()
    assert config.batch_size == 512
    assert "FLEXT_OBS_" in caplog.text


@pytest.mark.parametrize(
    ("argv0", "name"),
    [("/srv/app/worker.py", "worker"), ("-c", "python-service"), ("", "python-service"),
     ("/srv/billing/__main__.py", "billing")],
)
def test_service_name_from_argv(monkeypatch, argv0, name):
    monkeypatch.setattr(sys, "argv", [argv0])
    assert default_service_name() == name
