"""`FlextObservabilityConfig`: how a service's SDK reaches the collector, from `FLEXT_OBS_*`.

The daemon reads `FLEXT_OBS_<SECTION>__<KEY>` from the same environment; this class
ignores every `FLEXT_OBS_*` variable that is not one of its own fields. Where no
`FLEXT_OBS_*` variable is set, `OTEL_SERVICE_NAME` and `OTEL_EXPORTER_OTLP_ENDPOINT` give
the service name and the endpoint, as OpenTelemetry users expect.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, StringConstraints, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

log = logging.getLogger("flext_observability.sdk")

ENV_PREFIX = "FLEXT_OBS_"
DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
DEFAULT_SERVICE_NAME = "python-service"
OTLP_GRPC_PORT = 4317
# The OpenTelemetry variables a field falls back to when its FLEXT_OBS_* one is not set.
OTEL_VARIABLES = {
    "endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
    "service_name": "OTEL_SERVICE_NAME",
}


def default_service_name() -> str:
    """The running script's name (`worker` for `python worker.py`), else `python-service`."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 in ("", "-c", "-m"):
        return DEFAULT_SERVICE_NAME
    path = Path(argv0)
    name = path.parent.name if path.stem == "__main__" else path.stem
    return name[:200] or DEFAULT_SERVICE_NAME


def getenv(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A variable looked up without regard to case, as pydantic-settings does."""
    environ = os.environ if environ is None else environ
    if name in environ:
        return environ[name]
    wanted = name.upper()
    return next((value for key, value in environ.items() if key.upper() == wanted), None)


class _OpenTelemetryEnvironment(PydanticBaseSettingsSource):
    """`OTEL_SERVICE_NAME` and `OTEL_EXPORTER_OTLP_ENDPOINT`; empty means unset (OTel spec)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {field: (getenv(name) or "").strip() for field, name in OTEL_VARIABLES.items()}
        return {field: value for field, value in found.items() if value}


Seconds = Annotated[float, Field(gt=0)]


class FlextObservabilityConfig(BaseSettings):
    """Settings of the SDK client; every field reads `FLEXT_OBS_<FIELD>` from the environment.

    `endpoint` is the collector's HTTP base URL (`http://` is added when it has no scheme,
    as OpenTelemetry SDKs do), `token` its bearer token (when the collector has
    `server.auth.tokens`), `service_name`/`instance` the `job`/`instance` of everything
    sent. The client buffers at most `buffer_limit` items per signal (the oldest are dropped
    beyond that), posts batches of `batch_size` every `flush_interval` seconds (sooner when a
    batch is full), retries throttling and connection errors with backoff capped at
    `max_retry_delay` for at most `max_retry_elapsed` seconds per batch, and at exit spends at
    most `exit_flush_deadline` seconds sending what is left.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    endpoint: str = DEFAULT_ENDPOINT
    token: SecretStr | None = None
    service_name: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        default_factory=default_service_name
    )
    instance: Annotated[str, StringConstraints(max_length=200)] = ""
    batch_size: Annotated[int, Field(gt=0, le=10_000)] = 512
    buffer_limit: Annotated[int, Field(gt=0)] = 10_000
    flush_interval: Seconds = 1.0
    timeout: Seconds = 5.0
    max_retry_delay: Seconds = 30.0
    max_retry_elapsed: Seconds = 120.0
    exit_flush_deadline: Annotated[float, Field(ge=0)] = 2.0

    @field_validator("endpoint", mode="before")
    @classmethod
    def _endpoint(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.strip()
        if "://" not in value:
            value = f"http://{value}"
        try:
            parts = urlsplit(value)
            valid = (parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
                     and not any(c.isspace() for c in value) and (parts.port or 1) > 0)
        except ValueError:  # a port that is not a number in 0-65535
            valid = False
        if not valid:
            raise ValueError("must be an http:// or https:// URL (e.g. http://127.0.0.1:4318)")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings, env_settings, _OpenTelemetryEnvironment(settings_cls),
            dotenv_settings, file_secret_settings,
        )


def _variables(field: str) -> list[str]:
    """The variables that can set `field`, the one that wins first."""
    names = [f"{ENV_PREFIX}{field.upper()}"]
    if field in OTEL_VARIABLES:
        names.append(OTEL_VARIABLES[field])
    return names


def _shown(field: str, value: Any) -> str:
    return "(the secret is not shown)" if field == "token" else repr(value)


def config_from_env() -> FlextObservabilityConfig:
    """The config from the environment; instrumentation must not stop the service it
    instruments, so an invalid variable is skipped (the next one for its field, or the
    default, is used), every valid setting is kept, and one warning names what was skipped."""
    overrides: dict[str, Any] = {}
    skipped: dict[str, set[str]] = {}
    warnings: list[str] = []
    while True:
        try:
            config = FlextObservabilityConfig(**overrides)
            break
        except ValidationError as exc:
            progress = False
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else ""
                if field not in FlextObservabilityConfig.model_fields:
                    continue
                tried = skipped.setdefault(field, set())
                candidates = [v for v in _variables(field) if v not in tried and getenv(v)]
                if not candidates:
                    continue
                bad, rest = candidates[0], candidates[1:]
                tried.add(bad)
                progress = True
                if rest:
                    overrides[field] = getenv(rest[0])
                    instead = f"{rest[0]} instead"
                else:
                    default = FlextObservabilityConfig.model_fields[field].get_default(
                        call_default_factory=True
                    )
                    overrides[field] = default
                    instead = f"the default {_shown(field, default)}"
                message = error["msg"].removeprefix("Value error, ")
                warnings.append(f"{bad} is invalid ({field}: {message}); using {instead}")
            if not progress:
                log.warning("flext-observability: invalid SDK settings, using the defaults: %s",
                            exc)
                return FlextObservabilityConfig.model_construct()
    if warnings:
        log.warning("flext-observability: %s; the other settings are kept", "; ".join(warnings))
    if urlsplit(config.endpoint).port == OTLP_GRPC_PORT:
        log.warning("flext-observability: the endpoint %s is on port %d, OTLP/gRPC's; the SDK "
                    "posts HTTP, to the collector's HTTP port (4318 unless "
                    "server.http_port says otherwise)", config.endpoint, OTLP_GRPC_PORT)
    return config


@functools.cache
def default_config() -> FlextObservabilityConfig:
    """The process's config: `config_from_env()`, read once (so a warning is logged once)."""
    return config_from_env()
