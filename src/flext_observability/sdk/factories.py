"""`flext_create_*`: build an entity from the seed's arguments; a `FlextResult`, never an exception.

Each factory validates exactly the JSON the client would send, with the collector's own
models, so an entity that is built is one the collector accepts. A failure's error names
every field at fault: `"value: must be a finite number"`. `service` and `instance` default
to the process's `FlextObservabilityConfig`; times default to now.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from opentelemetry import trace as otel_trace
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticSerializationError, to_json

from flext_observability.models.errors import item_errors
from flext_observability.models.native import Attributes
from flext_observability.sdk.config import default_config
from flext_observability.sdk.entities import (
    OPERATION_ATTRIBUTE,
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


def validation_message(exc: ValidationError, prefix: str = "") -> str:
    """`"field: message; other.field: message"` from a model's validation error; each
    field is written after `prefix` (`"metrics_config.cpu."`)."""
    by_field: dict[str, list[str]] = {}
    for error in item_errors(exc, batch=False):
        messages = by_field.setdefault(error.field, [])
        if error.message not in messages:
            messages.append(error.message)
    return "; ".join(
        f"{prefix}{field}: {_one_message(messages)}"
        if field or prefix else _one_message(messages)
        for field, messages in by_field.items()
    )


def build(model: type[M], fields: dict[str, Any], prefix: str = "") -> FlextResult[M]:
    """Validate `fields` (None means "not given") as the JSON object `model` receives."""
    data = {key: value for key, value in fields.items() if value is not None}
    try:
        raw = to_json(data, inf_nan_mode="constants", fallback=_unsupported)
        return FlextResult.ok(model.model_validate_json(raw))
    except ValidationError as exc:
        return FlextResult.fail(validation_message(exc, prefix))
    except (PydanticSerializationError, ValueError, TypeError, RecursionError) as exc:
        return FlextResult.fail(f"{prefix}cannot encode the input as JSON: {exc}")


def _service(service: Any) -> Any:
    return default_config().service_name if service is None else service


def _instance(instance: Any) -> Any:
    return default_config().instance if instance is None else instance


def flext_create_metric(
    name: str,
    value: float,
    unit: str = "",
    *,
    type: str = "gauge",
    service: str | None = None,
    instance: str | None = None,
    labels: Mapping[str, str] | None = None,
    description: str = "",
    buckets: Sequence[float] | None = None,
    timestamp: Any = None,
) -> FlextResult[FlextMetric]:
    """A metric sample: `flext_create_metric("cpu_usage", 85.2, "percent")`.

    `type` is `counter` (an increment), `gauge` (the default) or `histogram`; `unit` is
    sent as the metric's `unit`.
    """
    return build(FlextMetric, metric_fields(
        name, value, unit, type=type, service=service, instance=instance, labels=labels,
        description=description, buckets=buckets, timestamp=timestamp,
    ))


def metric_fields(
    name: Any,
    value: Any,
    unit: Any = "",
    *,
    type: Any = "gauge",
    service: Any = None,
    instance: Any = None,
    labels: Any = None,
    description: Any = "",
    buckets: Any = None,
    timestamp: Any = None,
) -> dict[str, Any]:
    """The native JSON object of a metric, before validation (see `flext_create_metric`)."""
    return {
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
    }


class _Context(BaseModel):
    """A trace's `context` entries, checked as span attributes (errors name `context.<key>`)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    context: Attributes


_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
PROPAGATION_KEYS = frozenset({"traceparent", "tracestate"})


def _parse_traceparent(value: Any) -> tuple[str, str] | None:
    """(trace id, parent span id) of a W3C `traceparent`; None when it is not a valid one."""
    match = _TRACEPARENT.match(value.strip().lower()) if isinstance(value, str) else None
    if match is None or match[1] == "ff" or int(match[2], 16) == 0 or int(match[3], 16) == 0:
        return None
    return match[2], match[3]


def _trace_context(
    context: Any,
) -> FlextResult[tuple[tuple[str, str] | None, dict[str, Any]]]:
    """The remote parent named by `context["traceparent"]` and the other entries."""
    if context is None:
        return FlextResult.ok((None, {}))
    if not isinstance(context, Mapping):
        return FlextResult.fail("context: must be a mapping of attribute names to values")
    entries = {k: v for k, v in context.items()
               if not (isinstance(k, str) and k.lower() in PROPAGATION_KEYS)}
    parent = None
    for key, value in context.items():
        if isinstance(key, str) and key.lower() == "traceparent":
            parent = _parse_traceparent(value)
            if parent is None:
                return FlextResult.fail(f"context.{key}: must be a W3C traceparent "
                                        "(00-<32 hex trace id>-<16 hex span id>-<2 hex flags>)")
    return build(_Context, {"context": entries}).map(lambda c: (parent, c.context))


def flext_create_trace(
    name: str,
    operation: str | None = None,
    *,
    context: Mapping[str, Any] | None = None,
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
    """A span: `flext_create_trace("user_login", "auth-service")`.

    `operation` is sent as the span attribute `flext.operation`. `context` is a carrier:
    its W3C `traceparent` makes the span a child of that remote span (`tracestate` is not
    kept), its other entries become span attributes (`operation` and `attributes` win over
    an entry of the same name). Without `trace_id` or a `traceparent` the span joins the
    current span's trace as its child (or starts a new trace); without times it starts and
    ends now (the tracing service's `start_trace`/`complete_trace` set them).
    """
    if operation is not None and (not isinstance(operation, str) or not operation):
        return FlextResult.fail("operation: must be a non-empty string")
    found = _trace_context(context)
    if found.is_failure:
        return FlextResult.fail(str(found.error))
    remote, entries = found.unwrap()
    if trace_id is None and remote is not None:
        trace_id, parent_span_id = remote[0], parent_span_id or remote[1]
    elif trace_id is None:
        current = otel_trace.get_current_span().get_span_context()
        if current.is_valid:
            trace_id = trace_hex(current.trace_id)
            parent_span_id = parent_span_id or span_hex(current.span_id)
        else:
            trace_id = trace_hex(new_trace_id())
    if operation is not None:
        entries[OPERATION_ATTRIBUTE] = operation
    if attributes is not None and not isinstance(attributes, Mapping):
        return FlextResult.fail("attributes: must be a mapping of attribute names to values")
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
        "attributes": {**entries, **attributes} if attributes else entries or None,
        "events": events,
    })


def flext_create_alert(
    name: str,
    severity: str = "warning",
    message: str | None = None,
    *,
    source: str | None = None,
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
    """An alert: `flext_create_alert("high_cpu", "warning", "CPU usage > 80%")`.

    `severity` is `critical`, `warning` or `info`; `message` is sent as the `summary`
    annotation (give `message` or `summary`), `source` as the label `source`. Without
    `starts_at`/`ends_at` the collector uses the time it receives the alert.
    """
    if message is not None:
        if not isinstance(message, str):
            return FlextResult.fail(f"message: must be a string, not {type(message).__qualname__}")
        if summary:
            return FlextResult.fail("message: is the summary; give message or summary, not both")
        summary = message
    if source is not None:
        if not isinstance(source, str) or not source:
            return FlextResult.fail("source: must be a non-empty string")
        if labels is not None and not isinstance(labels, Mapping):
            return FlextResult.fail("labels: must be a mapping of label names to values")
        if labels and "source" in labels:
            return FlextResult.fail("source: also given as labels.source; give one")
        labels = {**(labels or {}), "source": source}
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


def worst_status(checks: Any) -> str:
    """The worst status among `checks` (their dicts or models); healthy with none."""
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


def _details_message(details: Mapping[Any, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in details.items())


def flext_create_health_check(
    status: str | None = None,
    *,
    name: str | None = None,
    details: Mapping[str, Any] | None = None,
    service: str | None = None,
    instance: str | None = None,
    checks: Mapping[str, Any] | None = None,
    ttl_seconds: float | None = None,
    timestamp: Any = None,
) -> FlextResult[FlextHealthCheck]:
    """A health report. Each check is a status string or `{status, message, observed_value}`;
    without `status` the report takes the worst of its checks (healthy with none).

    With `name` it is one named check: `flext_create_health_check(name="db",
    status="healthy", details={"component": "db"})` is a report whose checks hold `db` with
    that status and `details` as its message (`component=db`); `FlextHealthService` adds it
    to the other checks it reports for the service.
    """
    checks = _checks(checks)
    if details is not None and name is None:
        return FlextResult.fail("details: describe a named check; give name as well")
    if name is not None:
        if status is None:
            return FlextResult.fail("status: is required for a named check")
        if status not in _HEALTH_ORDER:
            return FlextResult.fail(f"status: must be one of {', '.join(_HEALTH_ORDER)}")
        if details is not None and not isinstance(details, Mapping):
            return FlextResult.fail("details: must be a mapping")
        if checks is not None and not isinstance(checks, Mapping):
            return FlextResult.fail("checks: must be a mapping of check names to checks")
        if checks and name in checks:
            return FlextResult.fail(f"name: {name!r} is also a key of checks; give one")
        check: dict[str, Any] = {"status": status}
        if details:
            check["message"] = _details_message(details)
        checks = {**(checks or {}), name: check} if isinstance(name, str) else checks
        status = None
    return build(FlextHealthCheck, {
        "name": name,
        "service": _service(service),
        "instance": _instance(instance),
        "status": worst_status(checks) if status is None else status,
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
