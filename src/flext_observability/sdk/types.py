"""`FlextObservabilityTypes`: type aliases for the values the SDK's functions take.

Annotate with them (`severity: FlextObservabilityTypes.Severity`); the factories still
take any value at run time and refuse a bad one with a failed `FlextResult`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal, TypeAlias


class FlextObservabilityTypes:
    """The accepted values of each field (as `Literal`s) and the shapes of the mappings."""

    MetricValue: TypeAlias = float
    MetricType: TypeAlias = Literal["counter", "gauge", "histogram"]
    Severity: TypeAlias = Literal["critical", "warning", "info"]
    AlertStatus: TypeAlias = Literal["firing", "resolved"]
    HealthStatus: TypeAlias = Literal["healthy", "degraded", "unhealthy"]
    SpanKind: TypeAlias = Literal["internal", "server", "client", "producer", "consumer"]
    SpanStatusCode: TypeAlias = Literal["unset", "ok", "error"]
    LogLevel: TypeAlias = Literal["debug", "info", "warning", "error", "critical"]
    # Integer Unix nanoseconds, an RFC 3339 string, or an aware datetime.
    Timestamp: TypeAlias = int | str | datetime
    Labels: TypeAlias = Mapping[str, str]
    AttributeValue: TypeAlias = (
        str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int]
        | Sequence[float]
    )
    Attributes: TypeAlias = Mapping[str, AttributeValue]
    # A carrier: `traceparent` joins a remote trace, the other entries become attributes.
    TraceContext: TypeAlias = Mapping[str, object]
    # `{name: {"value": 85.2, "unit": "percent"}}` or `{name: 85.2}`.
    MetricsConfig: TypeAlias = Mapping[str, Mapping[str, object] | float]
    # `{"level": 2, "severity": "critical"}`.
    EscalationConfig: TypeAlias = Mapping[str, object]
    # A check is a status or `{"status": ..., "message": ..., "observed_value": ...}`.
    HealthChecks: TypeAlias = Mapping[str, str | Mapping[str, object]]
