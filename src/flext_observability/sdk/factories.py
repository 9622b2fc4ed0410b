"""`flext_create_*`: build an entity from keyword arguments; a `FlextResult`, never an exception.

Each factory validates exactly the JSON the client would send, with the collector's own
models, so an entity that is built is one the collector accepts. A failure's error names
every field at fault: `"value: must be a finite number"`. `service` and `instance` default
to the process's `FlextObservabilityConfig`; times default to now.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from opentelemetry import trace as otel_trace
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError, to_json

from flext_observability.models.errors import item_errors
from flext_observability.sdk.config import default_config
from flext_observability.sdk.entities import (
    FlextAlert,
    FlextHealthCheck,
    FlextLogEntry,
    FlextMetric,
    FlextTrace,
)
from flext_observability.sdk.result import FlextResult
from flext_observability.sdk.tracecontext import new_span_id, new_trace_id, span_hex, trace_hex

M = TypeVar("M", bound=BaseModel)

_HEALTH_ORDER = ("healthy", "degraded", "unhealthy")


def _unsupported(obj: Any) -> dict[str, str]:
    # Stands in for a value JSON cannot hold, so that validation names its field.
    return {"unsupported_type": type(obj).__qualname__}


_INPUT_SHOULD_BE = "Input should be a valid "


def _one_message(messages: list[str]) -> str:
    """A union's alternatives in one message: "Input should be a valid string or integer"."""
    if len(messages) > 1 and all(m.startswith(_INPUT_SHOULD_BE) for m in messages):
        kinds = [m[len(_INPUT_SHOULD_BE):] for m in messages]
        return f"{_INPUT_SHOULD_BE}{', '.join(kinds[:-1])} or {kinds[-1]}"
    return "; ".join(messages)


def validation_message(exc: ValidationError) -> str:
    """`"field: message; other.field: message"` from a model's validation error."""
    by_field: dict[str, list[str]] = {}
    for error in item_errors(exc, batch=False):
        messages = by_field.setdefault(error.field, [])
        if error.message not in messages:
            messages.append(error.message)
    return "; ".join(
        f"{field}: {_one_message(messages)}" if field else _one_message(messages)
        for field, messages in by_field.items()
    )


def build(model: type[M], fields: dict[str, Any]) -> FlextResult[M]:
    """Validate `fields` (None means "not given") as the JSON object `model` receives."""
    data = {key: value for key, value in fields.items() if value is not None}
    try:
        raw = to_json(data, inf_nan_mode="constants", fallback=_unsupported)
        return FlextResult.ok(model.model_validate_json(raw))
    except ValidationError as exc:
        return FlextResult.fail(validation_message(exc))
    except (PydanticSerializationError, ValueError, TypeError, RecursionError) as exc:
        return FlextResult.fail(f"cannot encode the input as JSON: {exc}")


def _service(service: Any) -> Any:
    return default_config().service_name if service is None else service


def _instance(instance: Any) -> Any:
    return default_config().instance if instance is None else instance


def flext_create_metric(
    name: str,
    value: float,
    *,
    type: str = "gauge",
    service: str | None = None,
    instance: str | None = None,
    labels: Mapping[str, str] | None = None,
    unit: str = "",
    description: str = "",
    buckets: Sequence[float] | None = None,
    timestamp: Any = None,
) -> FlextResult[FlextMetric]:
    """A metric sample; `type` is `counter` (an increment), `gauge` or `histogram`."""
    return build(FlextMetric, {
        "name": name,
        "type": type,
        "value": value,
        "service": _service(service),
        "instance": _instance(instance),
        "labels": labels,
        "unit": unit,
        "description": description,
        "buckets": buckets,
        "timestamp": time.time_ns() if timestamp is None else timestamp,
    })


def flext_create_trace(
    name: str,
    *,
    service: str | None = None,
    trace_id: str | None = None,
    span_id: str | None = None,
    parent_span_id: str | None = None,
    kind: str = "internal",
    start_time: Any = None,
    end_time: Any = None,
    status: str = "unset",
    status_message: str = "",
    attributes: Mapping[str, Any] | None = None,
    events: Sequence[Mapping[str, Any]] | None = None,
) -> FlextResult[FlextTrace]:
    """A finished span. Without `trace_id` it joins the current span's trace as its child
    (or starts a new trace); without times it starts and ends now."""
    if trace_id is None:
        current = otel_trace.get_current_span().get_span_context()
        if current.is_valid:
            trace_id = trace_hex(current.trace_id)
            parent_span_id = parent_span_id or span_hex(current.span_id)
        else:
            trace_id = trace_hex(new_trace_id())
    now = time.time_ns()
    return build(FlextTrace, {
        "trace_id": trace_id,
        "span_id": span_hex(new_span_id()) if span_id is None else span_id,
        "parent_span_id": parent_span_id,
        "name": name,
        "service": _service(service),
        "kind": kind,
        "start_time": now if start_time is None else start_time,
        "end_time": now if end_time is None else end_time,
        "status": {"code": status, "message": status_message},
        "attributes": attributes,
        "events": events,
    })


def flext_create_alert(
    name: str,
    *,
    severity: str = "warning",
    status: str = "firing",
    service: str | None = None,
    instance: str | None = None,
    summary: str = "",
    description: str = "",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    starts_at: Any = None,
    ends_at: Any = None,
    generator_url: str = "",
) -> FlextResult[FlextAlert]:
    """An alert; without `starts_at`/`ends_at` the collector uses the time it receives it."""
    return build(FlextAlert, {
        "name": name,
        "severity": severity,
        "status": status,
        "service": _service(service),
        "instance": _instance(instance),
        "summary": summary,
        "description": description,
        "labels": labels,
        "annotations": annotations,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "generator_url": generator_url,
    })


def _checks(checks: Any) -> Any:
    """`{"db": "healthy"}` is short for `{"db": {"status": "healthy"}}`."""
    if not isinstance(checks, Mapping):
        return checks
    return {name: {"status": c} if isinstance(c, str) else c for name, c in checks.items()}


def _worst_status(checks: Any) -> str:
    worst = 0
    if isinstance(checks, Mapping):
        for check in checks.values():
            if isinstance(check, Mapping):
                status = check.get("status")
            else:
                status = getattr(check, "status", None)
            if isinstance(status, str) and status in _HEALTH_ORDER:
                worst = max(worst, _HEALTH_ORDER.index(status))
    return _HEALTH_ORDER[worst]


def flext_create_health_check(
    status: str | None = None,
    *,
    service: str | None = None,
    instance: str | None = None,
    checks: Mapping[str, Any] | None = None,
    ttl_seconds: float | None = None,
    timestamp: Any = None,
) -> FlextResult[FlextHealthCheck]:
    """A health report. Each check is a status string or `{status, message, observed_value}`;
    without `status` the report takes the worst of its checks (healthy with none)."""
    checks = _checks(checks)
    return build(FlextHealthCheck, {
        "service": _service(service),
        "instance": _instance(instance),
        "status": _worst_status(checks) if status is None else status,
        "checks": checks,
        "ttl_seconds": ttl_seconds,
        "timestamp": time.time_ns() if timestamp is None else timestamp,
    })


def flext_create_log_entry(
    message: str,
    *,
    level: str = "info",
    service: str | None = None,
    instance: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    timestamp: Any = None,
    trace_id: str | None = None,
    span_id: str | None = None,
) -> FlextResult[FlextLogEntry]:
    """A log entry; without ids it carries the current span's trace and span ids."""
    if trace_id is None and span_id is None:
        current = otel_trace.get_current_span().get_span_context()
        if current.is_valid:
            trace_id, span_id = trace_hex(current.trace_id), span_hex(current.span_id)
    return build(FlextLogEntry, {
        "message": message,
        "level": level,
        "service": _service(service),
        "instance": _instance(instance),
        "attributes": attributes,
        "timestamp": time.time_ns() if timestamp is None else timestamp,
        "trace_id": trace_id,
        "span_id": span_id,
    })
