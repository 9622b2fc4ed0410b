"""The SDK's entities: the collector's own models (CONTRACT §4), plus a log entry.

`FlextMetric` is a `Metric`, `FlextTrace` a `Span`, `FlextAlert` an `Alert` and
`FlextHealthCheck` a `HealthReport`: one set of validation rules, shared with the
receivers. Build them with the `flext_create_*` factories, which return a `FlextResult`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

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
        return self.model_dump(mode="json", exclude_none=True)  # type: ignore[attr-defined]


class FlextMetric(Metric, _Sendable):
    """One sample: a counter increment, a gauge value or a histogram observation."""

    signal: ClassVar[str] = "metrics"


class FlextTrace(Span, _Sendable):
    """One finished span."""

    signal: ClassVar[str] = "spans"


class FlextAlert(Alert, _Sendable):
    """An alert, firing or resolved; identity is (name, service, severity, labels)."""

    signal: ClassVar[str] = "alerts"


class FlextHealthCheck(HealthReport, _Sendable):
    """A service's health report, with its named checks."""

    signal: ClassVar[str] = "health"


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
