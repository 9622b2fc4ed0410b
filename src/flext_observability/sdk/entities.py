"""The SDK's entities: the collector's own models (CONTRACT §4), plus a log entry.

`FlextMetric` is a `Metric`, `FlextTrace` a `Span`, `FlextAlert` an `Alert` and
`FlextHealthCheck` a `HealthReport`: one set of validation rules, shared with the
receivers. Build them with the `flext_create_*` factories, which return a `FlextResult`.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from flext_observability.models.native import (
    HEX_SPAN_ID,
    HEX_TRACE_ID,
    Alert,
    Attributes,
    FieldError,
    HealthReport,
    Metric,
    NonEmpty,
    Span,
    UnixNanos,
)


class _Sendable:
    """An entity the client posts to `POST /api/v1/{signal}`."""

    signal: ClassVar[str]

    def to_payload(self) -> dict[str, Any]:
        """The JSON object of the native API."""
        payload: dict[str, Any] = self.model_dump(  # type: ignore[attr-defined]
            mode="json", exclude_none=True, warnings=False
        )
        return payload


class FlextMetric(Metric, _Sendable):
    """One sample: a counter increment, a gauge value or a histogram observation."""

    signal: ClassVar[str] = "metrics"


OPERATION_ATTRIBUTE = "flext.operation"


class FlextTrace(Span, _Sendable):
    """One span: sent as it is (`record`), or started and completed by the tracing service."""

    signal: ClassVar[str] = "spans"

    @property
    def operation(self) -> str | None:
        """The `operation` given to `flext_create_trace` (the `flext.operation` attribute)."""
        value = self.attributes.get(OPERATION_ATTRIBUTE)
        return value if isinstance(value, str) else None


class FlextAlert(Alert, _Sendable):
    """An alert, firing or resolved; identity is (name, service, instance, severity, labels)."""

    signal: ClassVar[str] = "alerts"

    @property
    def alert_id(self) -> str:
        """16 hex digits identifying the alert: the hash of the label set Alertmanager gets
        (alertname, severity, service, instance, labels), the same for a repeat or the
        resolve of this alert."""
        labels = {"alertname": self.name, "severity": self.severity.value,
                  "service": self.service, **self.labels}
        if self.instance:
            labels["instance"] = self.instance
        canonical = "\x1f".join(f"{k}\x1e{v}" for k, v in sorted(labels.items()))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class FlextHealthCheck(HealthReport, _Sendable):
    """A service's health report, with its named checks.

    Made with `flext_create_health_check(name=...)` it is one named check (`name`, not sent
    as such): `FlextHealthService` adds it to the checks it reports for the service.
    """

    signal: ClassVar[str] = "health"

    name: NonEmpty | None = Field(default=None, exclude=True)


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class FlextLogEntry(BaseModel):
    """A structured log record that carries the trace and span it was written in.

    The collector has no native log route; an entry is for the service's own log
    pipeline (`entry.model_dump_json()`), where its `trace_id`/`span_id` join it to the
    spans the collector received.
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    service: NonEmpty
    instance: Annotated[str, StringConstraints(max_length=200)] = ""
    level: LogLevel = LogLevel.INFO
    message: Annotated[str, StringConstraints(max_length=65_536)]
    attributes: Attributes = {}
    timestamp: UnixNanos
    trace_id: Annotated[str, StringConstraints(pattern=HEX_TRACE_ID)] | None = None
    span_id: Annotated[str, StringConstraints(pattern=HEX_SPAN_ID)] | None = None

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if self.span_id is not None and self.trace_id is None:
            raise FieldError("span_id", "needs a trace_id")
        for field in ("trace_id", "span_id"):
            ident = getattr(self, field)
            if ident is not None and int(ident, 16) == 0:
                raise FieldError(field, "must not be all zero")
        return self
