"""FlextObservabilityConfig: FLEXT_OBS_* fields, defaults, the daemon's variables ignored, the
OpenTelemetry fallbacks, and a bad variable skipped while the good ones are kept."""

from __future__ import annotations

import logging
import sys

import pytest
from pydantic import ValidationError

from flext_observability import FlextObservabilityConfig
from flext_observability.sdk.config import config_from_env, default_service_name


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("ENDPOINT", "TOKEN", "SERVICE_NAME", "BATCH_SIZE", "INSTANCE"):
        monkeypatch.delenv(f"FLEXT_OBS_{name}", raising=False)
    for name in ("OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


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
    [("endpoint", "ftp://collector:4318"), ("endpoint", "http://"),
     ("endpoint", "http://a b"), ("endpoint", "http://host:port"), ("endpoint", "http://:80"),
     ("endpoint", "http://host:99999"), ("batch_size", 0), ("buffer_limit", -1),
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
    ("given", "endpoint"),
    [("collector:4318", "http://collector:4318"), ("localhost:4318", "http://localhost:4318"),
     (" 10.0.0.7:4318/ ", "http://10.0.0.7:4318/"), ("https://c:443", "https://c:443"),
     ("HTTP://c:4318", "HTTP://c:4318")],
)
def test_an_endpoint_without_a_scheme_gets_http(given, endpoint):
    assert FlextObservabilityConfig(endpoint=given).endpoint == endpoint


def test_one_bad_variable_keeps_every_good_one_and_warns_once_naming_it(monkeypatch, caplog):
    monkeypatch.setenv("FLEXT_OBS_ENDPOINT", "ftp://collector:4318")
    monkeypatch.setenv("FLEXT_OBS_SERVICE_NAME", "billing")
    monkeypatch.setenv("FLEXT_OBS_TOKEN", "s3cret")
    monkeypatch.setenv("FLEXT_OBS_BATCH_SIZE", "64")
    with caplog.at_level(logging.WARNING, "flext_observability.sdk"):
        config = config_from_env()
    assert config.endpoint == "http://127.0.0.1:4318"
    assert (config.service_name, config.batch_size) == ("billing", 64)
    assert config.token.get_secret_value() == "s3cret"
    (record,) = caplog.records
    assert "FLEXT_OBS_ENDPOINT" in record.getMessage()
    assert "endpoint: must be an http:// or https:// URL" in record.getMessage()
    assert "s3cret" not in caplog.text


def test_every_bad_variable_is_named_in_the_one_warning(monkeypatch, caplog):
    monkeypatch.setenv("FLEXT_OBS_BATCH_SIZE", "many")
    monkeypatch.setenv("FLEXT_OBS_TOKEN", "s3cret")
    monkeypatch.setenv("FLEXT_OBS_FLUSH_INTERVAL", "-1")
    monkeypatch.setenv("FLEXT_OBS_SERVICE_NAME", "billing")
    with caplog.at_level(logging.WARNING, "flext_observability.sdk"):
        config = config_from_env()
    assert (config.batch_size, config.flush_interval, config.service_name) == (
        512, 1.0, "billing")
    (record,) = caplog.records
    assert "FLEXT_OBS_BATCH_SIZE" in record.getMessage()
    assert "FLEXT_OBS_FLUSH_INTERVAL" in record.getMessage()
    assert "FLEXT_OBS_SERVICE_NAME" not in record.getMessage()


def test_opentelemetry_variables_where_no_flext_obs_one_is_set(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector:4318")
    config = config_from_env()
    assert (config.service_name, config.endpoint) == ("checkout", "http://otel-collector:4318")
    monkeypatch.setenv("FLEXT_OBS_SERVICE_NAME", "billing")
    monkeypatch.setenv("FLEXT_OBS_ENDPOINT", "http://flext:4318")
    config = config_from_env()
    assert (config.service_name, config.endpoint) == ("billing", "http://flext:4318")


def test_empty_opentelemetry_variables_are_unset(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", " ")
    config = config_from_env()
    assert (config.service_name, config.endpoint) == (
        default_service_name(), "http://127.0.0.1:4318")


def test_an_opentelemetry_endpoint_without_a_scheme_gets_http(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "otel-collector:4318")
    assert config_from_env().endpoint == "http://otel-collector:4318"


def test_a_bad_flext_obs_endpoint_falls_back_to_the_opentelemetry_one(monkeypatch, caplog):
    monkeypatch.setenv("FLEXT_OBS_ENDPOINT", "ftp://x")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector:4318")
    with caplog.at_level(logging.WARNING, "flext_observability.sdk"):
        assert config_from_env().endpoint == "http://otel-collector:4318"
    assert "FLEXT_OBS_ENDPOINT is invalid" in caplog.text
    assert "using OTEL_EXPORTER_OTLP_ENDPOINT instead" in caplog.text


def test_a_bad_opentelemetry_variable_is_named_too(monkeypatch, caplog):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://otel-collector:4317")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    with caplog.at_level(logging.WARNING, "flext_observability.sdk"):
        config = config_from_env()
    assert (config.endpoint, config.service_name) == ("http://127.0.0.1:4318", "checkout")
    assert "OTEL_EXPORTER_OTLP_ENDPOINT is invalid" in caplog.text


@pytest.mark.parametrize(
    ("argv0", "name"),
    [("/srv/app/worker.py", "worker"), ("-c", "python-service"), ("", "python-service"),
     ("/srv/billing/__main__.py", "billing")],
)
def test_service_name_from_argv(monkeypatch, argv0, name):
    monkeypatch.setattr(sys, "argv", [argv0])
    assert default_service_name() == name


def test_the_otlp_grpc_port_gets_a_hint(monkeypatch, caplog):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317")
    with caplog.at_level(logging.WARNING, "flext_observability.sdk"):
        assert config_from_env().endpoint == "http://localhost:4317"
    assert "port 4317, OTLP/gRPC's; the SDK posts HTTP" in caplog.text
