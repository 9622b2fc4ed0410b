"""The collector's whole configuration: YAML file, `${ENV}` expansion, `FLEXT_OBS_*` overrides.

Errors are reported with the YAML path of the key (`queue.max_items: ...`), so that
`check-config` and `serve` can say exactly what to fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def parse_duration(value: Any) -> Any:
    """`30`, `30s`, `5m`, `1h`, `250ms` -> seconds; anything else is left for the type check."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"'{value}' is not a duration (use seconds or e.g. 30s, 5m, 1h)")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthConfig(_Section):
    tokens: list[str] = []


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    http_port: Port = 4318
    grpc_port: Port = 4317
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    max_items_per_request: int = Field(default=10_000, gt=0)
    grpc_max_message_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    auth: AuthConfig = AuthConfig()


class QueueConfig(_Section):
    kind: Literal["disk", "memory"] = "disk"
    path: Path = Path(".flext-observability")
    max_items: int = Field(default=1_000_000, gt=0)
    max_bytes: int = Field(default=1024 * 1024 * 1024, gt=0)
    retry_after_seconds: int = Field(default=5, gt=0)


class PrometheusExporterConfig(_Section):
    enabled: bool = True
    metric_expiration: Duration = 300.0
    max_series: int = Field(default=100_000, gt=0)
    max_series_per_metric: int = Field(default=10_000, gt=0)


class RetryConfig(_Section):
    initial_interval: Duration = 1.0
    max_interval: Duration = 30.0
    multiplier: float = Field(default=1.5, ge=1.0)
    randomization_factor: float = Field(default=0.5, ge=0.0, le=1.0)


class JaegerExporterConfig(_Section):
    endpoint: str | None = None
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    headers: dict[str, str] = {}
    compression: Literal["gzip", "none"] = "gzip"
    timeout: Duration = 10.0
    batch_max_items: int = Field(default=2048, gt=0)
    num_senders: int = Field(default=2, gt=0)
    retry: RetryConfig = RetryConfig()


class AlertmanagerExporterConfig(_Section):
    urls: list[str] = []
    resend_interval: Duration = 60.0
    timeout: Duration = 10.0
    retry: RetryConfig = RetryConfig()


class ExportersConfig(_Section):
    prometheus: PrometheusExporterConfig = PrometheusExporterConfig()
    jaeger: JaegerExporterConfig = JaegerExporterConfig()
    alertmanager: AlertmanagerExporterConfig = AlertmanagerExporterConfig()


class HealthConfig(_Section):
    default_ttl_seconds: Duration = 60.0


class Config(BaseSettings):
    """Every key may be overridden by `FLEXT_OBS_<SECTION>__<KEY>`; env wins over the file."""

    model_config = SettingsConfigDict(
        env_prefix="FLEXT_OBS_", env_nested_delimiter="__", extra="forbid"
    )

    server: ServerConfig = ServerConfig()
    queue: QueueConfig = QueueConfig()
    exporters: ExportersConfig = ExportersConfig()
    health: HealthConfig = HealthConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


class ConfigError(Exception):
    """A config that cannot be used; `errors` holds one `path: message` line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def expand_env(value: Any, environ: dict[str, str] | None = None) -> Any:
    """Replace `${NAME}` and `${NAME:-default}` in every string of a loaded YAML tree."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: env.get(m.group(1), m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: expand_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    return value


def _format_errors(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{path}: {message}")
    return lines


def load_config(path: Path | None = None) -> Config:
    """Build the config from an optional YAML file plus the environment; raise ConfigError."""
    data: Any = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
        except yaml.YAMLError as exc:
            raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
        if not isinstance(data, dict):
            raise ConfigError(["(top level): must be a mapping of sections"])
    try:
        return Config(**expand_env(data))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from exc
