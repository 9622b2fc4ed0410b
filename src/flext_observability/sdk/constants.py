"""`FlextObservabilityConstants`: the SDK's fixed names and values, in one place to read.

Each value is taken from where it is used (the models, the config, the client, the
decorator, the services), so this namespace cannot drift from the behaviour.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from flext_observability.models.native import (
    AlertStatus,
    HealthStatus,
    MetricType,
    Severity,
    SpanKind,
    StatusCode,
)
from flext_observability.sdk import client, config, entities, monitor, services


class FlextObservabilityConstants:
    """Environment, endpoints, the values each field accepts, and the names the SDK sends."""

    ENV_PREFIX: Final = config.ENV_PREFIX
    OTEL_VARIABLES: Final = MappingProxyType(dict(config.OTEL_VARIABLES))
    DEFAULT_ENDPOINT: Final = config.DEFAULT_ENDPOINT
    DEFAULT_SERVICE_NAME: Final = config.DEFAULT_SERVICE_NAME
    SIGNAL_PATHS: Final = MappingProxyType(dict(client.SIGNAL_PATHS))
    OTLP_METRICS_PATH: Final = client.OTLP_METRICS_PATH

    METRIC_TYPES: Final = tuple(kind.value for kind in MetricType)
    SEVERITIES: Final = tuple(severity.value for severity in Severity)
    ALERT_STATUSES: Final = tuple(status.value for status in AlertStatus)
    HEALTH_STATUSES: Final = tuple(status.value for status in HealthStatus)
    SPAN_KINDS: Final = tuple(kind.value for kind in SpanKind)
    SPAN_STATUS_CODES: Final = tuple(code.value for code in StatusCode)
    LOG_LEVELS: Final = tuple(level.value for level in entities.LogLevel)
    MAX_NAME_LENGTH: Final = 200

    CALLS_METRIC: Final = monitor.CALLS_METRIC
    DURATION_METRIC: Final = monitor.DURATION_METRIC
    DURATION_BUCKETS: Final = monitor.DURATION_BUCKETS
    OPERATION_ATTRIBUTE: Final = entities.OPERATION_ATTRIBUTE
    UNFINISHED_ATTRIBUTE: Final = services.UNFINISHED_ATTRIBUTE
    ESCALATION_LABEL: Final = services.ESCALATION_LABEL
