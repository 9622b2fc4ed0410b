"""The collector's whole configuration: YAML file, `${ENV}` expansion, `FLEXT_OBS_*` overrides.

Errors are reported with the YAML path of the key (`queue.max_items: ...`), so that
`check-config` and `serve` can say exactly what to fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args, get_origin
from urllib.parse import urlsplit

import orjson
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    model_validator,
)

from flext_observability.exporters.alertmanager.config import AlertmanagerExporterConfig
from flext_observability.exporters.debug.config import DebugExporterConfig
from flext_observability.exporters.jaeger.config import JaegerExporterConfig
from flext_observability.exporters.otlp.config import OtlpExporters, OtlpSignal
from flext_observability.exporters.prometheus.config import PrometheusExporterConfig
from flext_observability.exporters.prometheus_remote_write.config import (
    PrometheusRemoteWriteConfig,
)
from flext_observability.health.config import HealthConfig
from flext_observability.pipeline.kafka.config import KafkaConfig
from flext_observability.settings import Duration, Float, Int, Port, Token, check_token
from flext_observability.settings import Section as _Section
from flext_observability.tls import TlsServerConfig

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

DEFAULT_TENANT = "default"
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _tenant(value: str) -> str:
    if not _TENANT.match(value):
        raise ValueError(
            f"'{value}' is not a tenant name (letters, digits, '_', '.', '-'; at most 128)"
        )
    return value


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
            entry = (
                (check_token(token), _tenant(tenant)) if sep
                else (check_token(line), DEFAULT_TENANT)
            )
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
    max_body_bytes: Int = Field(default=16 * 1024 * 1024, gt=0)
    max_items_per_request: Int = Field(default=10_000, gt=0)
    grpc_max_message_bytes: Int = Field(default=16 * 1024 * 1024, gt=0)
    workers: Int = Field(default=0, ge=0, le=64)
    read_timeout: Duration = 30.0
    # Connections (per process; see receivers.connections): how many are open at once, how
    # long and how large a request's head may be, how long an idle one is kept.
    max_connections: Int = Field(default=4096, gt=0)
    header_timeout: Duration = 10.0
    max_header_bytes: Int = Field(default=64 * 1024, ge=1024)
    max_headers: Int = Field(default=100, gt=0)
    keep_alive_timeout: Duration = 5.0
    # How many refused requests `/api/v1/refusals` keeps (the most recent).
    refusals_kept: Int = Field(default=1000, gt=0, le=100_000)
    # The log level, in place of `serve --log-level` (and changed by a reload).
    log_level: Literal["debug", "info", "warning", "error"] | None = None
    auth: AuthConfig = AuthConfig()
    tls: TlsServerConfig = TlsServerConfig()
    cors: CorsConfig = CorsConfig()


class QueueConfig(_Section):
    kind: Literal["disk", "memory", "kafka"] = "disk"
    path: Path = Path(".flext-observability")
    max_items: Int = Field(default=1_000_000, gt=0)
    max_bytes: Int = Field(default=1024 * 1024 * 1024, gt=0)
    signal_share: Float = Field(default=0.5, gt=0, le=1)
    retry_after_seconds: Int = Field(default=5, gt=0)
    # Spans with no span exporter configured: refused (the default), or held here until one is.
    hold_unexported: bool = False
    # kind kafka: the brokers and topics (queue.path keeps the applied state and offsets)
    kafka: KafkaConfig = KafkaConfig()


class ExportersConfig(_Section):
    prometheus: PrometheusExporterConfig = PrometheusExporterConfig()
    jaeger: JaegerExporterConfig = JaegerExporterConfig()
    alertmanager: AlertmanagerExporterConfig = AlertmanagerExporterConfig()
    otlp: OtlpExporters = []
    prometheus_remote_write: PrometheusRemoteWriteConfig = PrometheusRemoteWriteConfig()
    debug: DebugExporterConfig = DebugExporterConfig()

    @model_validator(mode="after")
    def _remote_write_reads_the_store(self) -> Self:
        if self.prometheus_remote_write.url and not self.prometheus.enabled:
            raise ValueError(
                "prometheus_remote_write sends the series the prometheus exporter holds: "
                "it needs prometheus.enabled"
            )
        return self


class LimitsConfig(_Section):
    """What one request, one item or the whole process may take before ingestion refuses."""

    max_concurrent_requests: Int = Field(default=256, gt=0)
    # A request whose body is still arriving after slow_body_seconds leaves its slot for
    # one of max_slow_requests slots (or is answered 408 when they are all taken).
    slow_body_seconds: Duration = 1.0
    max_slow_requests: Int = Field(default=32, gt=0)
    memory_limit_mib: Int = Field(default=1024, ge=0)
    memory_spike_limit_mib: Int = Field(default=200, ge=0)
    memory_check_interval: Duration = 0.1
    retry_after_seconds: Int = Field(default=5, gt=0)
    max_labels_per_metric: Int = Field(default=32, gt=0)
    # The Metric model caps label values at 2048 characters; this can only lower it.
    max_label_value_length: Int = Field(default=2048, gt=0, le=2048)
    max_attributes_per_item: Int = Field(default=128, gt=0)
    # Bounds of one histogram (native `buckets`, OTLP `explicitBounds`; +Inf not counted).
    max_buckets_per_histogram: Int = Field(default=160, gt=0)
    max_attribute_value_length: Int = Field(default=1024 * 1024, gt=0)

    @model_validator(mode="after")
    def _spike_below_limit(self) -> Self:
        if self.memory_limit_mib and self.memory_spike_limit_mib >= self.memory_limit_mib:
            raise ValueError(
                "limits.memory_spike_limit_mib must be smaller than limits.memory_limit_mib"
            )
        return self


class Config(_Section):
    """Every key may be overridden by `FLEXT_OBS_<SECTION>__<KEY>`; env wins over the file."""

    server: ServerConfig = ServerConfig()
    queue: QueueConfig = QueueConfig()
    exporters: ExportersConfig = ExportersConfig()
    health: HealthConfig = HealthConfig()
    limits: LimitsConfig = LimitsConfig()

    def accepts_spans(self) -> bool:
        """Spans are taken in when an exporter will deliver them, or the queue holds them."""
        return self.exports("traces") or self.queue.hold_unexported

    def exports(self, signal: OtlpSignal) -> bool:
        """Some exporter takes `signal` (traces, metrics or logs) off the queue."""
        if signal == "traces" and self.exporters.jaeger.endpoint is not None:
            return True
        debug = self.exporters.debug
        if debug.enabled and ("spans" if signal == "traces" else signal) in debug.signals:
            return True
        return any(signal in entry.signals for entry in self.exporters.otlp)


ENV_PREFIX = "FLEXT_OBS_"
Path_ = tuple[str | int, ...]


class ConfigError(Exception):
    """A config that cannot be used; `errors` holds one line per problem, each naming where
    it came from: `file: yaml.path: message` or `VARIABLE (yaml.path): message`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _dotted(path: Path_) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def expand_env(
    value: Any,
    environ: Mapping[str, str] | None = None,
    refs: dict[Path_, list[str]] | None = None,
    path: Path_ = (),
) -> Any:
    """Replace `${NAME}` and `${NAME:-default}` in every string of a loaded YAML tree.

    `${NAME}` with NAME unset raises ConfigError naming it (and the YAML path); `refs`, when
    given, gets the variables used at each path."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if refs is not None:
                refs.setdefault(path, []).append(name)
            if name in env:
                return env[name]
            if default is None:
                raise ConfigError([
                    f"{_dotted(path)}: ${{{name}}} is not set (set it, or write "
                    f"${{{name}:-default}})"
                ])
            return default

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {k: expand_env(v, env, refs, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, refs, (*path, i)) for i, v in enumerate(value)]
    return value


def _field(path: list[str]) -> Any:
    """The annotation of the config key at `path`, or None when there is no such key."""
    model: Any = Config
    annotation: Any = None
    for name in path:
        fields = getattr(model, "model_fields", None)
        if fields is None or name not in fields:
            return None
        annotation = fields[name].annotation
        model = annotation
    return annotation


def _kind(annotation: Any) -> str:
    """How an environment value is read for a key of this type."""
    for arg in (annotation, *get_args(annotation)):
        origin = get_origin(arg) or arg
        if origin is list:
            return "list"
        if origin is dict or (isinstance(origin, type) and issubclass(origin, BaseModel)):
            return "json"
        if origin in (int, float, bool):
            return "scalar"
    return "text"


def _env_value(name: str, path: list[str], text: str) -> Any:
    kind = _kind(_field(path))
    if kind == "text":
        return text
    if kind == "scalar":
        try:
            return yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError:
            return text
    if kind == "list" and not text.lstrip().startswith("["):
        return [item.strip() for item in text.split(",") if item.strip()]
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        shape = "a JSON list or comma-separated values" if kind == "list" else "a JSON object"
        raise ConfigError([f"{name} ({'.'.join(path)}): must be {shape}"]) from None


def _from_environment(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[Path_, str]]:
    """`FLEXT_OBS_<SECTION>__<KEY>` values as a tree, and the variable of each path. Names
    of no config section (the SDK's FLEXT_OBS_ENDPOINT...) are not the daemon's."""
    tree: dict[str, Any] = {}
    sources: dict[Path_, str] = {}
    errors: list[str] = []
    for name, text in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        if path[0] not in Config.model_fields or "" in path:
            continue
        try:
            value = _env_value(name, path, text)
        except ConfigError as exc:
            errors += exc.errors
            continue
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[-1]] = value
            sources[tuple(path)] = name
    if errors:
        raise ConfigError(errors)
    return tree, sources


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    message: str = error["msg"]
    return message.removeprefix("Value error, ")


def _format_errors(
    exc: ValidationError,
    file: Path | None,
    env: dict[Path_, str],
    refs: dict[Path_, list[str]],
    environ: Mapping[str, str],
) -> list[str]:
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        where, message = _dotted(loc), _message(error)
        variables = [v for p, v in env.items() if p == loc[: len(p)]] or [
            v for p, v in env.items() if p[: len(loc)] == loc
        ]
        if variables:
            lines.append(f"{', '.join(variables)} ({where}): {message}")
            continue
        used = [
            n for p, names in refs.items()
            if p[: len(loc)] == loc or loc[: len(p)] == p
            for n in names
        ]
        if used:
            empty = [n for n in used if not environ.get(n)]
            message += f" (from ${{{used[0]}}}{', which is empty' if empty else ''})"
        lines.append(f"{file}: {where}: {message}" if file is not None else f"{where}: {message}")
    return lines


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the config from an optional YAML file plus the environment; raise ConfigError
    with every problem, each naming its source (the file and YAML path, or the variable)."""
    env = os.environ if environ is None else environ
    data: Any = {}
    refs: dict[Path_, list[str]] = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
        except yaml.YAMLError as exc:
            raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
        if not isinstance(data, dict):
            raise ConfigError([f"{path}: (top level): must be a mapping of sections"])
        try:
            data = expand_env(data, env, refs)
        except ConfigError as exc:
            raise ConfigError([f"{path}: {line}" for line in exc.errors]) from None
    overrides, sources = _from_environment(env)
    try:
        return Config.model_validate(_merge(data, overrides))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path, sources, refs, env)) from None
