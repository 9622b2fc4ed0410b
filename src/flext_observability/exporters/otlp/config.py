"""`exporters.otlp`: a list of OTLP destinations, each with its own signals and settings."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from flext_observability.settings import (
    Duration,
    EndpointUrl,
    Int,
    RetryConfig,
)
from flext_observability.settings import Section as _Section
from flext_observability.tls import TlsClientConfig

OtlpSignal = Literal["traces", "metrics", "logs"]
SIGNALS: tuple[OtlpSignal, ...] = ("traces", "metrics", "logs")
# Names the collector's other consumers and exporters use (cursors, /readyz, labels).
RESERVED_NAMES = frozenset({
    "prometheus", "jaeger", "alertmanager", "health", "alerts", "debug",
    "prometheus_remote_write",
})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"'{value}' is not an exporter name (letters, digits, '_', '.', '-'; at most 63)"
        )
    if value in RESERVED_NAMES:
        raise ValueError(f"'{value}' is reserved (one of {', '.join(sorted(RESERVED_NAMES))})")
    return value


class OtlpDelivery(_Section):
    """How items go to one OTLP endpoint: an `exporters.otlp` entry's settings, and
    `exporters.jaeger`'s (its preset)."""

    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    headers: dict[str, str] = {}
    compression: Literal["gzip", "none"] = "gzip"
    timeout: Duration = 10.0
    batch_max_items: Int = Field(default=2048, gt=0)
    batch_timeout: Duration = 0.2
    num_senders: Int = Field(default=2, gt=0)
    retry: RetryConfig = RetryConfig()
    tls: TlsClientConfig = TlsClientConfig()

    @model_validator(mode="after")
    def _grpc_always_verifies(self) -> Self:
        if self.protocol == "grpc" and self.tls.insecure_skip_verify:
            raise ValueError(
                "tls.insecure_skip_verify is not available with protocol grpc "
                "(grpc always verifies the server); give tls.ca_file instead"
            )
        return self


class OtlpExporterConfig(OtlpDelivery):
    """One OTLP destination. `name` labels its self-metrics and its `/readyz` entry."""

    name: Annotated[str, AfterValidator(_name)]
    endpoint: EndpointUrl
    signals: list[OtlpSignal] = Field(default=list(SIGNALS), min_length=1)

    @model_validator(mode="after")
    def _signals_once_each(self) -> Self:
        if len(set(self.signals)) != len(self.signals):
            raise ValueError("signals: each of traces, metrics, logs at most once")
        return self


def _unique_names(entries: list[OtlpExporterConfig]) -> list[OtlpExporterConfig]:
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise ValueError(f"two exporters are named '{entry.name}'")
        seen.add(entry.name)
    return entries


OtlpExporters = Annotated[list[OtlpExporterConfig], AfterValidator(_unique_names)]
