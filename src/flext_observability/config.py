"""The collector's whole configuration: YAML file, `${ENV}` expansion, `FLEXT_OBS_*` overrides.

Errors are reported with the YAML path of the key (`queue.max_items: ...`), so that
`check-config` and `serve` can say exactly what to fix.
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from flext_observability.tls import client_ssl_context, server_ssl_context

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


DEFAULT_TENANT = "default"
_TOKEN = re.compile(r"^[!-~]{1,4096}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _token(value: str) -> str:
    """A bearer token. Messages about tokens never show the value."""
    if not _TOKEN.match(value):
        raise ValueError("a token must be 1 to 4096 printable ASCII characters, no spaces")
    return value


def _tenant(value: str) -> str:
    if not _TENANT.match(value):
        raise ValueError(
            f"'{value}' is not a tenant name (letters, digits, '_', '.', '-'; at most 128)"
        )
    return value


Token = Annotated[str, AfterValidator(_token)]
Tenant = Annotated[str, AfterValidator(_tenant)]


class TokenEntry(_Section):
    token: Token
    tenant: Tenant = DEFAULT_TENANT


def _token_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "token"
    return "entry" if isinstance(value, dict | TokenEntry) else None


TokenItem = Annotated[
    Annotated[Token, Tag("token")] | Annotated[TokenEntry, Tag("entry")],
    Discriminator(
        _token_kind,
        custom_error_type="token_entry",
        custom_error_message="must be a token string or {token: ..., tenant: ...}",
    ),
]


def read_tokens_file(path: Path) -> list[TokenEntry]:
    """`server.auth.tokens_file`: one `tenant:token` or bare `token` per line, `#` comments.

    A bare token cannot hold a `:` (what is before it would be read as the tenant).
    Errors name the file and line, never the line's content.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tenant, sep, token = line.partition(":")
        try:
            entry = (_token(token), _tenant(tenant)) if sep else (_token(line), DEFAULT_TENANT)
        except ValueError as exc:
            raise ValueError(f"{path} line {number}: {exc}") from None
        entries.append(TokenEntry(token=entry[0], tenant=entry[1]))
    return entries


def _tokens_file(path: Path) -> Path:
    read_tokens_file(path)
    return path


class AuthConfig(_Section):
    """Bearer tokens with their tenants; any token configured turns authentication on."""

    tokens: list[TokenItem] = []
    tokens_file: Annotated[Path, AfterValidator(_tokens_file)] | None = None
    protect_metrics: bool = False
    _entries: list[TokenEntry] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _collect(self) -> Self:
        entries = [TokenEntry(token=t) if isinstance(t, str) else t for t in self.tokens]
        if self.tokens_file is not None:
            entries += read_tokens_file(self.tokens_file)
        tenants: dict[str, str] = {}
        for entry in entries:
            tenant = tenants.setdefault(entry.token, entry.tenant)
            if tenant != entry.tenant:
                raise ValueError(
                    f"one token is configured for two tenants ('{tenant}', '{entry.tenant}')"
                )
        if self.protect_metrics and not entries:
            raise ValueError("protect_metrics needs tokens or a tokens_file")
        self._entries = entries
        return self

    def entries(self) -> list[TokenEntry]:
        """Every token of `tokens` and `tokens_file` (read when the config was loaded)."""
        return list(self._entries)


def _readable_file(path: Path) -> Path:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    return path


ReadableFile = Annotated[Path, AfterValidator(_readable_file)]


def _cert_and_key(cert_file: Path | None, key_file: Path | None) -> None:
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file must be set together")


class TlsServerConfig(_Section):
    """`server.tls`: a certificate turns TLS on for HTTP and gRPC; `client_ca_file` makes
    both require a client certificate signed by that CA."""

    cert_file: ReadableFile | None = None
    key_file: ReadableFile | None = None
    client_ca_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _loads(self) -> Self:
        _cert_and_key(self.cert_file, self.key_file)
        if self.cert_file is None:
            if self.client_ca_file is not None:
                raise ValueError("client_ca_file needs cert_file and key_file")
            return self
        try:
            server_ssl_context(self)
        except (ssl.SSLError, OSError) as exc:
            message = f"cert_file, key_file or client_ca_file does not load: {exc}"
            raise ValueError(message) from None
        return self


class TlsClientConfig(_Section):
    """An exporter's `tls`, used for https:// endpoints."""

    ca_file: ReadableFile | None = None
    cert_file: ReadableFile | None = None
    key_file: ReadableFile | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _loads(self) -> Self:
        _cert_and_key(self.cert_file, self.key_file)
        if self.ca_file is None and self.cert_file is None:
            return self
        try:
            client_ssl_context(self)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"ca_file, cert_file or key_file does not load: {exc}") from None
        return self


def _origin(value: str) -> str:
    parts = urlsplit(value)
    if value != "*" and (
        parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/")
    ):
        raise ValueError(f"'{value}' is not an origin like https://app.example.com (or *)")
    return value.rstrip("/")


class CorsConfig(_Section):
    """`server.cors`: browsers on these origins may POST to the OTLP/HTTP routes."""

    allowed_origins: list[Annotated[str, AfterValidator(_origin)]] = []
    allowed_headers: list[str] = []


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    http_port: Port = 4318
    grpc_port: Port = 4317
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    max_items_per_request: int = Field(default=10_000, gt=0)
    grpc_max_message_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    workers: int = Field(default=0, ge=0, le=64)
    read_timeout: Duration = 30.0
    auth: AuthConfig = AuthConfig()
    tls: TlsServerConfig = TlsServerConfig()
    cors: CorsConfig = CorsConfig()


class QueueConfig(_Section):
    kind: Literal["disk", "memory"] = "disk"
    path: Path = Path(".flext-observability")
    max_items: int = Field(default=1_000_000, gt=0)
    max_bytes: int = Field(default=1024 * 1024 * 1024, gt=0)
    signal_share: float = Field(default=0.5, gt=0, le=1)
    retry_after_seconds: int = Field(default=5, gt=0)
    # Spans with no span exporter configured: refused (the default), or held here until one is.
    hold_unexported: bool = False


class PrometheusExporterConfig(_Section):
    enabled: bool = True
    metric_expiration: Duration = 300.0
    max_series: int = Field(default=100_000, gt=0)
    max_series_per_metric: int = Field(default=10_000, gt=0)
    max_series_per_service: int = Field(default=20_000, gt=0)


class RetryConfig(_Section):
    initial_interval: Duration = 1.0
    max_interval: Duration = 30.0
    multiplier: float = Field(default=1.5, ge=1.0)
    randomization_factor: float = Field(default=0.5, ge=0.0, le=1.0)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{value}' is not a URL like http://host:port (http or https)")
    return value


EndpointUrl = Annotated[str, AfterValidator(_http_url)]


class JaegerExporterConfig(_Section):
    endpoint: EndpointUrl | None = None
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    headers: dict[str, str] = {}
    compression: Literal["gzip", "none"] = "gzip"
    timeout: Duration = 10.0
    batch_max_items: int = Field(default=2048, gt=0)
    batch_timeout: Duration = 0.2
    num_senders: int = Field(default=2, gt=0)
    retry: RetryConfig = RetryConfig()
    tls: TlsClientConfig = TlsClientConfig()

    @model_validator(mode="after")
    def _grpc_always_verifies(self) -> JaegerExporterConfig:
        if self.protocol == "grpc" and self.tls.insecure_skip_verify:
            raise ValueError(
                "tls.insecure_skip_verify is not available with protocol grpc "
                "(grpc always verifies the server); give tls.ca_file instead"
            )
        return self


class AlertmanagerExporterConfig(_Section):
    urls: list[EndpointUrl] = []
    resend_interval: Duration = 60.0
    timeout: Duration = 10.0
    retry: RetryConfig = RetryConfig()
    tls: TlsClientConfig = TlsClientConfig()


class ExportersConfig(_Section):
    prometheus: PrometheusExporterConfig = PrometheusExporterConfig()
    jaeger: JaegerExporterConfig = JaegerExporterConfig()
    alertmanager: AlertmanagerExporterConfig = AlertmanagerExporterConfig()


class HealthConfig(_Section):
    default_ttl_seconds: Duration = 60.0


class LimitsConfig(_Section):
    """What one request, one item or the whole process may take before ingestion refuses."""

    max_concurrent_requests: int = Field(default=256, gt=0)
    memory_limit_mib: int = Field(default=1024, ge=0)
    memory_spike_limit_mib: int = Field(default=200, ge=0)
    memory_check_interval: Duration = 0.1
    retry_after_seconds: int = Field(default=5, gt=0)
    max_labels_per_metric: int = Field(default=32, gt=0)
    # The Metric model caps label values at 2048 characters; this can only lower it.
    max_label_value_length: int = Field(default=2048, gt=0, le=2048)
    max_attributes_per_item: int = Field(default=128, gt=0)
    max_attribute_value_length: int = Field(default=1024 * 1024, gt=0)

    @model_validator(mode="after")
    def _spike_below_limit(self) -> Self:
        if self.memory_limit_mib and self.memory_spike_limit_mib >= self.memory_limit_mib:
            raise ValueError(
                "limits.memory_spike_limit_mib must be smaller than limits.memory_limit_mib"
            )
        return self


class Config(BaseSettings):
    """Every key may be overridden by `FLEXT_OBS_<SECTION>__<KEY>`; env wins over the file."""

    model_config = SettingsConfigDict(
        env_prefix="FLEXT_OBS_", env_nested_delimiter="__", extra="forbid"
    )

    server: ServerConfig = ServerConfig()
    queue: QueueConfig = QueueConfig()
    exporters: ExportersConfig = ExportersConfig()
    health: HealthConfig = HealthConfig()
    limits: LimitsConfig = LimitsConfig()

    def accepts_spans(self) -> bool:
        """Spans are taken in when an exporter will deliver them, or the queue holds them."""
        return self.exporters.jaeger.endpoint is not None or self.queue.hold_unexported

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
