"""Domain models of the native JSON API (CONTRACT §4) and their validation rules.

These are the one set of rules: the receivers validate requests with them and the SDK's
entities are built on them. Times are RFC 3339 strings or integer Unix nanoseconds and are
held as integer nanoseconds.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from flext_observability.models.labels import label_name

METRIC_NAME_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:.]*$"
# A Prometheus label name (dots accepted and translated) that does not start with `__`.
LABEL_NAME_PATTERN = r"^(?:[a-zA-Z][a-zA-Z0-9_.]*|_[a-zA-Z0-9.][a-zA-Z0-9_.]*|_)$"
HEX_TRACE_ID = r"^[0-9a-fA-F]{32}$"
HEX_SPAN_ID = r"^[0-9a-fA-F]{16}$"
RESERVED_LABELS = frozenset({"job", "instance", "le", "quantile"})
# With authentication on, the sender's tenant: a label on native and OTLP metrics and on
# alerts, a field of health reports, this resource attribute on OTLP data and spans.
TENANT = "tenant"
TENANT_ATTRIBUTE = "flext.tenant"

MetricName = Annotated[str, StringConstraints(pattern=METRIC_NAME_PATTERN, max_length=200)]
LabelName = Annotated[str, StringConstraints(pattern=LABEL_NAME_PATTERN, max_length=200)]
LabelValue = Annotated[str, StringConstraints(max_length=2048)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=8192)]


def to_unix_nanos(value: Any) -> Any:
    """RFC 3339 string -> integer Unix nanoseconds; integers pass; the rest fails the type."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError("must be an RFC 3339 time or integer Unix nanoseconds") from None
        if moment.tzinfo is None:
            raise ValueError("an RFC 3339 time needs a time zone offset (e.g. Z)")
        return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
    return value


UnixNanos = Annotated[int, BeforeValidator(to_unix_nanos), Field(ge=0)]


class FieldError(ValueError):
    """A rule broken by one field; `field` is its dotted path inside the item."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _check_labels(labels: dict[str, str], where: str) -> None:
    for key in labels:
        if key in RESERVED_LABELS:
            raise FieldError(f"{where}.{key}", f"'{key}' is reserved; use the model's own field")
    problem = label_collision(labels)
    if problem is not None:
        raise FieldError(f"{where}.{problem[0]}", problem[1])


def exposed_label(key: str) -> str:
    """The Prometheus label name of a valid label name: dots become underscores."""
    return label_name(key) if "." in key else key


def label_collision(labels: dict[str, str]) -> tuple[str, str] | None:
    """(key, message) when two label names are one Prometheus label once dots are
    translated (`x.y` and `x_y`): the series would carry the label twice."""
    seen: dict[str, str] = {}
    for key in labels:
        name = exposed_label(key)
        other = seen.setdefault(name, key)
        if other != key:
            return key, f"'{other}' and '{key}' are both the label '{name}'"
    return None


class MetricType(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


def metric_rules(
    kind: str, value: float, buckets: list[float] | None, labels: dict[str, str] | None
) -> None:
    """The rules of a metric that span fields; raises FieldError for the first one broken.

    The hot path (`models.wire`) makes the same checks on its structs.
    """
    if kind == MetricType.COUNTER and value < 0:
        raise FieldError("value", "a counter increment must be >= 0")
    if buckets is not None:
        if kind != MetricType.HISTOGRAM:
            raise FieldError("buckets", "only a histogram has buckets")
        if any(b >= c for b, c in pairwise(buckets)):
            raise FieldError("buckets", "bounds must be strictly increasing")
    if labels:
        _check_labels(labels, "labels")


class Metric(_Model):
    """One sample: a counter increment, a gauge value, or a histogram observation."""

    name: MetricName
    type: MetricType
    value: float
    service: NonEmpty
    instance: Annotated[str, StringConstraints(max_length=200)] = ""
    labels: dict[LabelName, LabelValue] = {}
    unit: Annotated[str, StringConstraints(max_length=64)] = ""
    description: Text = ""
    buckets: list[float] | None = None
    timestamp: UnixNanos | None = None

    @model_validator(mode="after")
    def _rules(self) -> Self:
        metric_rules(self.type, self.value, self.buckets, self.labels)
        return self


class SpanKind(StrEnum):
    INTERNAL = "internal"
    SERVER = "server"
    CLIENT = "client"
    PRODUCER = "producer"
    CONSUMER = "consumer"


class StatusCode(StrEnum):
    UNSET = "unset"
    OK = "ok"
    ERROR = "error"


Scalar = Annotated[str, StringConstraints(max_length=8192)] | bool | int | float
AttributeValue = Scalar | list[Scalar]
Attributes = dict[Annotated[str, StringConstraints(min_length=1, max_length=256)], AttributeValue]


class SpanStatus(_Model):
    code: StatusCode = StatusCode.UNSET
    message: Text = ""


class SpanEvent(_Model):
    name: NonEmpty
    time: UnixNanos
    attributes: Attributes = {}


class Span(_Model):
    trace_id: Annotated[str, StringConstraints(pattern=HEX_TRACE_ID)]
    span_id: Annotated[str, StringConstraints(pattern=HEX_SPAN_ID)]
    parent_span_id: Annotated[str, StringConstraints(pattern=HEX_SPAN_ID)] | None = None
    name: NonEmpty
    service: NonEmpty
    kind: SpanKind = SpanKind.INTERNAL
    start_time: UnixNanos
    end_time: UnixNanos
    status: SpanStatus = SpanStatus()
    attributes: Attributes = {}
    events: list[SpanEvent] = []

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if int(self.trace_id, 16) == 0:
            raise FieldError("trace_id", "must not be all zero")
        if int(self.span_id, 16) == 0:
            raise FieldError("span_id", "must not be all zero")
        if self.parent_span_id is not None and int(self.parent_span_id, 16) == 0:
            raise FieldError("parent_span_id", "must not be all zero (leave it out for a root)")
        if self.end_time < self.start_time:
            raise FieldError("end_time", "must not be before start_time")
        return self


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Alert(_Model):
    name: NonEmpty
    severity: Severity = Severity.WARNING
    status: AlertStatus = AlertStatus.FIRING
    service: NonEmpty
    instance: Annotated[str, StringConstraints(max_length=200)] = ""
    summary: Text = ""
    description: Text = ""
    labels: dict[LabelName, LabelValue] = {}
    annotations: dict[NonEmpty, Text] = {}
    starts_at: UnixNanos | None = None
    ends_at: UnixNanos | None = None
    generator_url: Annotated[str, StringConstraints(max_length=2048)] = ""

    @model_validator(mode="after")
    def _rules(self) -> Self:
        for key in self.labels:
            if key in {"alertname", "severity", "service", "instance"}:
                raise FieldError(f"labels.{key}", f"'{key}' is set from the alert's own field")
        if (
            self.starts_at is not None
            and self.ends_at is not None
            and self.ends_at < self.starts_at
        ):
            raise FieldError("ends_at", "must not be before starts_at")
        return self


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class HealthCheck(_Model):
    status: HealthStatus
    message: Text = ""
    observed_value: float | int | str | bool | None = None


class HealthReport(_Model):
    service: NonEmpty
    instance: Annotated[str, StringConstraints(max_length=200)] = ""
    status: HealthStatus
    checks: dict[NonEmpty, HealthCheck] = {}
    timestamp: UnixNanos | None = None
    ttl_seconds: Annotated[float, Field(gt=0, le=86_400 * 7)] | None = None


__all__ = [
    "Alert",
    "AlertStatus",
    "HealthCheck",
    "HealthReport",
    "HealthStatus",
    "Metric",
    "MetricType",
    "Severity",
    "Span",
    "SpanEvent",
    "SpanKind",
    "SpanStatus",
    "StatusCode",
    "metric_rules",
    "to_unix_nanos",
]
