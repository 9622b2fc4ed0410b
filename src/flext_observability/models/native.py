"""Domain models of the native JSON API (CONTRACT §4) and their validation rules.

These are the one set of rules: the receivers validate requests with them and the SDK's
entities are built on them. Times follow `models.times` (RFC 3339, Unix seconds or integer
Unix nanoseconds, refused when ambiguous) and are held as integer nanoseconds.
"""

from __future__ import annotations

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
from flext_observability.models.times import to_unix_nanos

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
LABEL_VALUE_MAX_LENGTH = 2048
LabelValue = Annotated[str, StringConstraints(max_length=LABEL_VALUE_MAX_LENGTH)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=8192)]


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


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _int64(value: Any) -> Any:
    """An integer, or each of a list's, must fit OTLP's int64 (JSON allows any size, and
    a float is left alone)."""
    for item in value if isinstance(value, list) else (value,):
        if type(item) is int and not INT64_MIN <= item <= INT64_MAX:
            raise ValueError("an integer must be between -2^63 and 2^63-1 (64-bit signed)")
    return value


Scalar = Annotated[str, StringConstraints(max_length=8192)] | bool | int | float
AttributeValue = Annotated[Scalar | list[Scalar], BeforeValidator(_int64)]
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


HEALTH_ORDER = (HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY)


def _check_object(value: Any) -> Any:
    """A check given as its status string (`"db": "healthy"`) is that check's `status`."""
    return {"status": value} if isinstance(value, str) else value


class HealthCheck(_Model):
    """One named check: `{status, message, observed_value}`, or just the status string."""

    status: HealthStatus
    message: Text = ""
    observed_value: Annotated[float | int | str | bool | None, BeforeValidator(_int64)] = None


def worst_status(checks: Any) -> str:
    """The worst status among the checks that name a known one; healthy with none."""
    worst = 0
    if isinstance(checks, dict):
        for check in map(_check_object, checks.values()):
            status = check.get("status") if isinstance(check, dict) else None
            if status in HEALTH_ORDER:
                worst = max(worst, HEALTH_ORDER.index(status))
    return HEALTH_ORDER[worst].value


def _status_optional(schema: dict[str, Any]) -> None:
    schema["required"] = [name for name in schema.get("required", []) if name != "status"]
    schema["properties"]["status"]["description"] = (
        "defaults to the worst status of the checks (healthy with none)"
    )


class HealthReport(_Model):
    """A service's health; `status` defaults to the worst of its checks."""

    model_config = ConfigDict(json_schema_extra=_status_optional)

    service: NonEmpty
    instance: Annotated[str, StringConstraints(max_length=200)] = ""
    status: HealthStatus
    checks: dict[NonEmpty, Annotated[HealthCheck, BeforeValidator(_check_object)]] = {}
    timestamp: UnixNanos | None = None
    ttl_seconds: Annotated[float, Field(gt=0, le=86_400 * 7)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_status(cls, data: Any) -> Any:
        if isinstance(data, dict) and "status" not in data:
            return {**data, "status": worst_status(data.get("checks"))}
        return data


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
    "worst_status",
]
