"""The receivers' settings: `server` (the listeners and what a connection may do, the
auth tokens and their tenants, CORS; TLS is `tls.TlsServerConfig`) and `limits` (what a
request and an item may be, and the limits in front of the receivers: requests in flight,
the memory limiter). The top-level config composes them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Discriminator, Field, PrivateAttr, Tag, model_validator

from flext_observability.settings import Duration, Int, Port, Section, Token, check_token
from flext_observability.tls import TlsServerConfig

DEFAULT_TENANT = "default"
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _tenant(value: str) -> str:
    if not _TENANT.match(value):
        raise ValueError(
            f"'{value}' is not a tenant name (letters, digits, '_', '.', '-'; at most 128)"
        )
    return value


Tenant = Annotated[str, AfterValidator(_tenant)]


class TokenEntry(Section):
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


class AuthConfig(Section):
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


class CorsConfig(Section):
    """`server.cors`: browsers on these origins may POST to the OTLP/HTTP routes."""

    allowed_origins: list[Annotated[str, AfterValidator(_origin)]] = []
    allowed_headers: list[str] = []


class ServerConfig(Section):
    """The listeners and how they read a request: addresses and ports, workers, connections,
    a request's head, its body's bytes and time, TLS, auth, CORS. What a request's items
    may be, and what the process admits, is `limits`."""

    host: str = "127.0.0.1"
    http_port: Port = 4318
    grpc_port: Port = 4317
    max_body_bytes: Int = Field(default=16 * 1024 * 1024, gt=0)
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


class LimitsConfig(Section):
    """What one request, one item or the whole process may take before ingestion refuses."""

    # Items of one native request (a batch).
    max_items_per_request: Int = Field(default=10_000, gt=0)
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
