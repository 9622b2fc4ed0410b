"""The four services: build entities with the factories and hand them to the client.

A service made with no argument uses the process-wide client (the one
`get_global_factory()` holds). Every method returns a `FlextResult`: the entity that was
queued, or why none was (the fields at fault). The seed's async methods (`record_metric`,
`start_trace`, `process_alert`, `execute_health_check`, ...) have sync twins named with a
`_sync` suffix; neither blocks on the network or raises into the caller, so the async ones
only wrap the sync ones. `FlextObservabilityServices` holds the four as nested names.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flext_observability.models.native import Severity
from flext_observability.sdk.client import FlextObservabilityClient, Payload
from flext_observability.sdk.default import default_client
from flext_observability.sdk.entities import FlextAlert, FlextHealthCheck, FlextMetric, FlextTrace
from flext_observability.sdk.factories import (
    build,
    flext_create_alert,
    flext_create_health_check,
    flext_create_metric,
    flext_create_trace,
    metric_fields,
    worst_status,
)
from flext_observability.sdk.result import FlextResult
from flext_observability.sdk.tracecontext import (
    MAX_TEXT,
    activate,
    current_parent,
    deactivate,
    error_status,
    exception_event,
    new_span_id,
    span_hex,
    trace_hex,
)

log = logging.getLogger("flext_observability.sdk")

E = TypeVar("E", bound=Payload)
M = TypeVar("M", FlextMetric, FlextTrace, FlextAlert, FlextHealthCheck)

ESCALATION_LABEL = "escalation_level"
ESCALATION_KEYS = ("level", "severity")
UNFINISHED_ATTRIBUTE = "flext.span.unfinished"
CLOSED = "client: closed (FlextObservabilityMonitor.stop or close() was called); nothing is sent"
MAX_CHECKS = 1000  # named checks kept per (service, instance)
METRIC_CONFIG_KEYS = ("value", "unit", "type", "labels", "description")
_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass
class _ClientState:
    """What the services remember per client: traces started and not yet completed, and
    the named checks last reported per (service, instance)."""

    client: weakref.ref[FlextObservabilityClient]
    lock: threading.Lock = field(default_factory=threading.Lock)
    open_traces: dict[str, FlextTrace] = field(default_factory=dict)
    checks: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def end_open_traces(self) -> None:
        """At close: send every trace still open, ended now and marked unfinished."""
        with self.lock:
            traces, self.open_traces = list(self.open_traces.values()), {}
        client = self.client()
        if not traces or client is None:
            return
        now = time.time_ns()
        invalid = []
        for trace in traces:
            payload = trace.to_payload()
            payload["end_time"] = max(now, trace.start_time)
            payload["attributes"] = {**trace.attributes, UNFINISHED_ATTRIBUTE: True}
            ended = build(FlextTrace, payload)
            if ended.is_success:
                client.send(ended.unwrap())
            else:
                invalid.append(f"{trace.name!r}: {ended.error}")
        log.warning("flext-observability: %d trace(s) started with start_trace were never "
                    "completed; sent at close, ended then and marked %s%s",
                    len(traces) - len(invalid), UNFINISHED_ATTRIBUTE,
                    f"; not sent, invalid: {'; '.join(invalid)}" if invalid else "")


_states: weakref.WeakKeyDictionary[FlextObservabilityClient, _ClientState] = (
    weakref.WeakKeyDictionary()
)
_states_lock = threading.Lock()


def _state(client: FlextObservabilityClient) -> _ClientState:
    with _states_lock:
        state = _states.get(client)
        if state is not None:
            return state
        state = _states[client] = _ClientState(weakref.ref(client))
    client.on_close(state.end_open_traces)
    return state


def _wrong_type(argument: str, expected: str, value: Any) -> FlextResult[Any]:
    return FlextResult.fail(f"{argument}: must be {expected}, not {type(value).__qualname__}")


def _checked(kind: type[M], item: Any, argument: str) -> FlextResult[M]:
    """`item` validated again (an entity's fields can be assigned after it was made)."""
    if not isinstance(item, kind):
        return _wrong_type(argument, f"a {kind.__name__}", item)
    payload = item.to_payload()
    if isinstance(item, FlextHealthCheck):
        payload["name"] = item.name
    return build(kind, payload)


class _Service:
    def __init__(self, client: FlextObservabilityClient | None = None) -> None:
        if client is None:
            client = default_client()
        self._client = client
        self._service = client.config.service_name
        self._instance = client.config.instance

    def _send(self, item: E) -> FlextResult[E]:
        """Give `item` to the client; a failure once the client is closed (it would drop it)."""
        if self._client.closed:
            return FlextResult.fail(CLOSED)
        self._client.send(item)
        return FlextResult.ok(item)


class FlextMetricsService(_Service):
    """Counters, gauges and histograms of this service (`job` = the config's service name)."""

    async def record_metric(
        self,
        metric: FlextMetric | str,
        value: float | None = None,
        unit: str = "",
        *,
        type: str = "gauge",
        labels: Mapping[str, str] | None = None,
        description: str = "",
    ) -> FlextResult[FlextMetric]:
        """`record_metric(metric)` or `record_metric(name, value, unit)`: see the sync twin."""
        return self.record_metric_sync(
            metric, value, unit, type=type, labels=labels, description=description
        )

    def record_metric_sync(
        self,
        metric: FlextMetric | str,
        value: float | None = None,
        unit: str = "",
        *,
        type: str = "gauge",
        labels: Mapping[str, str] | None = None,
        description: str = "",
    ) -> FlextResult[FlextMetric]:
        """Queue a `FlextMetric`, or one made here from a name, a value and a unit (a gauge
        of this service unless `type` says otherwise)."""
        if isinstance(metric, str):
            return build(FlextMetric, metric_fields(
                metric, value, unit, type=type, service=self._service,
                instance=self._instance, labels=labels, description=description,
            )).flat_map(self._send)
        if value is not None or unit:
            return FlextResult.fail("value: give a FlextMetric or (name, value, unit), not both")
        return _checked(FlextMetric, metric, "metric").flat_map(self._send)

    record = record_metric_sync

    async def collect_metrics(
        self, service: str, metrics_config: Mapping[str, Any]
    ) -> FlextResult[list[FlextMetric]]:
        """See `collect_metrics_sync`."""
        return self.collect_metrics_sync(service, metrics_config)

    def collect_metrics_sync(
        self, service: str, metrics_config: Mapping[str, Any]
    ) -> FlextResult[list[FlextMetric]]:
        """Record one metric per entry of `metrics_config` for `service` (their `job`):
        `{"cpu": {"value": 85.2, "unit": "percent"}, "queue": 3}`. An entry is a number or a
        mapping of `value` (required), `unit`, `type` (default gauge), `labels`,
        `description`. All or nothing: with any entry at fault, none is sent and the error
        names every field at fault (`metrics_config.cpu.value: ...`)."""
        if not isinstance(service, str) or not 1 <= len(service) <= 200:
            return FlextResult.fail("service: must be a string of 1 to 200 characters")
        if not isinstance(metrics_config, Mapping) or not metrics_config:
            return FlextResult.fail(
                "metrics_config: must be a non-empty mapping of metric names to "
                "{value, unit} or numbers"
            )
        metrics: list[FlextMetric] = []
        errors: list[str] = []
        now = time.time_ns()
        for name, spec in metrics_config.items():
            prefix = f"metrics_config.{name}"
            if isinstance(spec, Mapping):
                unknown = sorted(str(key) for key in spec if key not in METRIC_CONFIG_KEYS)
                if unknown:
                    errors.append(f"{prefix}.{unknown[0]}: is not a known key "
                                  f"({', '.join(METRIC_CONFIG_KEYS)})")
                    continue
                fields = dict(spec)
            elif isinstance(spec, int | float) and not isinstance(spec, bool):
                fields = {"value": spec}
            else:
                errors.append(f"{prefix}: must be a number or a mapping with value and unit")
                continue
            built = build(FlextMetric, metric_fields(
                name, fields.get("value"), fields.get("unit", ""),
                type=fields.get("type", "gauge"), service=service, instance=self._instance,
                labels=fields.get("labels"), description=fields.get("description", ""),
                timestamp=now,
            ), prefix=f"{prefix}.")
            if built.is_failure:
                errors.append(str(built.error))
            else:
                metrics.append(built.unwrap())
        if errors:
            return FlextResult.fail("; ".join(errors))
        if self._client.closed:
            return FlextResult.fail(CLOSED)
        for metric in metrics:
            self._client.send(metric)
        return FlextResult.ok(metrics)

    def record_counter(
        self,
        name: str,
        value: float = 1.0,
        *,
        labels: Mapping[str, str] | None = None,
        unit: str = "",
        description: str = "",
    ) -> FlextResult[FlextMetric]:
        """Add `value` (>= 0) to a counter; the collector exposes it as `<name>_total`."""
        return self._metric("counter", name, value, labels, unit, description, None)

    def record_gauge(
        self,
        name: str,
        value: float,
        *,
        labels: Mapping[str, str] | None = None,
        unit: str = "",
        description: str = "",
    ) -> FlextResult[FlextMetric]:
        return self._metric("gauge", name, value, labels, unit, description, None)

    def record_histogram(
        self,
        name: str,
        value: float,
        *,
        labels: Mapping[str, str] | None = None,
        unit: str = "",
        description: str = "",
        buckets: Sequence[float] | None = None,
    ) -> FlextResult[FlextMetric]:
        """One observation; `buckets` are the upper bounds (the collector's defaults if None)."""
        return self._metric("histogram", name, value, labels, unit, description, buckets)

    def _metric(
        self,
        kind: str,
        name: str,
        value: float,
        labels: Mapping[str, str] | None,
        unit: str,
        description: str,
        buckets: Sequence[float] | None,
    ) -> FlextResult[FlextMetric]:
        return flext_create_metric(
            name, value, unit, type=kind, service=self._service, instance=self._instance,
            labels=labels, description=description, buckets=buckets,
        ).flat_map(self._send)


class ActiveSpan:
    """A started span; `FlextTracingService.finish_span` (or leaving `span()`) sends it."""

    def __init__(
        self,
        name: str,
        kind: str,
        trace_id: int,
        span_id: int,
        parent_span_id: int,
        attributes: Mapping[str, Any] | None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.trace_id = trace_hex(trace_id)
        self.span_id = span_hex(span_id)
        self.parent_span_id = span_hex(parent_span_id) if parent_span_id else None
        self.start_time = time.time_ns()
        self.attributes: dict[str, Any] = dict(attributes or {})
        self.events: list[dict[str, Any]] = []
        self.status: dict[str, str] = {"code": "unset", "message": ""}
        self.result: FlextResult[FlextTrace] | None = None

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        self.events.append({"name": name, "time": time.time_ns(), "attributes": attributes or {}})

    def set_status(self, code: str, message: str = "") -> None:
        """`ok` or `error` (with a message); spans are `unset` until told otherwise."""
        self.status = {"code": code, "message": message}

    def record_exception(self, exc: BaseException) -> None:
        """An `exception` event (type, message, stack trace) and an error status."""
        self.events.append(exception_event(exc, time.time_ns()))
        self.status = error_status(exc)


class FlextTracingService(_Service):
    """Spans of this service, joined to the current span (ours or OpenTelemetry's).

    The seed's way: `start_trace(trace or name)`, then `complete_trace(trace)` or
    `error_trace(trace, message)`, which send the span; a trace still open when the client
    closes is sent then, marked `flext.span.unfinished`. `span()` is a context manager that
    makes the span current while its block runs, so nested spans, decorated functions and
    OpenTelemetry propagators see it. `start_span` and `finish_span` do the same without
    making it current.
    """

    def __init__(self, client: FlextObservabilityClient | None = None) -> None:
        super().__init__(client)
        self._state = _state(self._client)

    async def start_trace(
        self,
        trace: FlextTrace | str,
        operation: str | None = None,
        *,
        context: Mapping[str, Any] | None = None,
    ) -> FlextResult[FlextTrace]:
        """See `start_trace_sync`."""
        return self.start_trace_sync(trace, operation, context=context)

    def start_trace_sync(
        self,
        trace: FlextTrace | str,
        operation: str | None = None,
        *,
        context: Mapping[str, Any] | None = None,
    ) -> FlextResult[FlextTrace]:
        """Start `trace` now (a `FlextTrace`, or a span name with the `operation` and
        `context` of `flext_create_trace`); nothing is sent until it is completed. Returns
        the started trace (its `start_time` is now). The trace is not made current."""
        if isinstance(trace, str):
            made = flext_create_trace(trace, operation, context=context, service=self._service)
        elif operation is not None or context is not None:
            return FlextResult.fail("operation: give a FlextTrace or (name, operation, "
                                    "context), not both")
        else:
            made = _checked(FlextTrace, trace, "trace")
        return made.flat_map(self._open)

    def _open(self, trace: FlextTrace) -> FlextResult[FlextTrace]:
        if self._client.closed:
            return FlextResult.fail(CLOSED)
        now = time.time_ns()
        started = trace.model_copy(update={"start_time": now, "end_time": now})
        with self._state.lock:
            if trace.span_id in self._state.open_traces:
                return FlextResult.fail(f"trace: span {trace.span_id} is already started")
            if len(self._state.open_traces) >= self._client.config.buffer_limit:
                return FlextResult.fail(
                    f"trace: {len(self._state.open_traces)} traces are open (the limit is "
                    "buffer_limit); complete_trace or error_trace them"
                )
            self._state.open_traces[trace.span_id] = started
        # The worker runs from now on, so that sending this trace at exit needs no new thread.
        self._client.start()
        return FlextResult.ok(started)

    async def complete_trace(self, trace: FlextTrace) -> FlextResult[FlextTrace]:
        """See `complete_trace_sync`."""
        return self.complete_trace_sync(trace)

    def complete_trace_sync(self, trace: FlextTrace) -> FlextResult[FlextTrace]:
        """End a started trace now and send it; its status becomes `ok` unless it is
        already `error`. Returns the span as sent."""
        if not isinstance(trace, FlextTrace):
            return _wrong_type("trace", "a FlextTrace", trace)
        code = "error" if trace.status.code == "error" else "ok"
        return self._end(trace, {"code": code, "message": trace.status.message})

    async def error_trace(self, trace: FlextTrace, message: str) -> FlextResult[FlextTrace]:
        """See `error_trace_sync`."""
        return self.error_trace_sync(trace, message)

    def error_trace_sync(self, trace: FlextTrace, message: str) -> FlextResult[FlextTrace]:
        """End a started trace now with status `error` and `message` (cut at 8 KiB), and
        send it. Returns the span as sent."""
        if not isinstance(trace, FlextTrace):
            return _wrong_type("trace", "a FlextTrace", trace)
        if not isinstance(message, str):
            return _wrong_type("message", "a string", message)
        return self._end(trace, {"code": "error", "message": message[:MAX_TEXT]})

    def _end(self, trace: FlextTrace, status: dict[str, str]) -> FlextResult[FlextTrace]:
        if self._client.closed:  # the traces open at close were sent then
            return FlextResult.fail(CLOSED)
        with self._state.lock:
            started = self._state.open_traces.get(trace.span_id)
        if started is None:
            return FlextResult.fail(
                f"trace: span {trace.span_id} is not started or already ended; "
                "start_trace it first"
            )
        payload = trace.to_payload()
        payload.update(start_time=started.start_time,
                       end_time=max(time.time_ns(), started.start_time), status=status)
        ended = build(FlextTrace, payload)
        if ended.is_failure:
            return ended
        with self._state.lock:
            if self._state.open_traces.pop(trace.span_id, None) is None:
                return FlextResult.fail(f"trace: span {trace.span_id} is already ended")
        return ended.flat_map(self._send)

    def start_span(
        self,
        name: str,
        *,
        kind: str = "internal",
        attributes: Mapping[str, Any] | None = None,
        parent: ActiveSpan | None = None,
    ) -> FlextResult[ActiveSpan]:
        """Start a span now; fails at once when the name, kind or attributes are invalid."""
        span = self._open_span(name, kind, attributes, parent)
        return self._build(span, span.start_time).map(lambda _: span)

    def finish_span(
        self, span: ActiveSpan, *, error: BaseException | None = None
    ) -> FlextResult[FlextTrace]:
        """End the span now (recording `error` if given) and queue it."""
        if error is not None:
            span.record_exception(error)
        span.result = self._build(span, time.time_ns()).flat_map(self._send)
        return span.result

    def record(self, trace: FlextTrace) -> FlextResult[FlextTrace]:
        """Send a finished `FlextTrace` as it is."""
        return _checked(FlextTrace, trace, "trace").flat_map(self._send)

    @contextmanager
    def span(
        self,
        name: str,
        *,
        kind: str = "internal",
        attributes: Mapping[str, Any] | None = None,
    ) -> Iterator[ActiveSpan]:
        """`with tracing.span("load") as span: ...`; an exception is recorded and re-raised.

        The outcome is in `span.result` afterwards; an invalid span is logged, not raised.
        """
        span = self._open_span(name, kind, attributes, None)
        token = activate(int(span.trace_id, 16), int(span.span_id, 16))
        error: BaseException | None = None
        try:
            yield span
        except BaseException as exc:
            error = exc
            raise
        finally:
            deactivate(token)
            result = self.finish_span(span, error=error)
            if result.is_failure:
                log.warning("flext-observability: span %r not sent: %s", name, result.error)

    def _open_span(
        self,
        name: str,
        kind: str,
        attributes: Mapping[str, Any] | None,
        parent: ActiveSpan | None,
    ) -> ActiveSpan:
        if parent is not None:
            trace_id, parent_id = int(parent.trace_id, 16), int(parent.span_id, 16)
        else:
            trace_id, parent_id = current_parent()
        return ActiveSpan(name, kind, trace_id, new_span_id(), parent_id, attributes)

    def _build(self, span: ActiveSpan, end_time: int) -> FlextResult[FlextTrace]:
        return flext_create_trace(
            span.name,
            service=self._service,
            trace_id=span.trace_id,
            span_id=span.span_id,
            parent_span_id=span.parent_span_id,
            kind=span.kind,
            start_time=span.start_time,
            end_time=end_time,
            status=span.status["code"],
            status_message=span.status["message"],
            attributes=span.attributes,
            events=span.events,
        )


def _escalation(
    alert: FlextAlert, config: Any
) -> FlextResult[tuple[int, Severity]]:
    """(level, severity) from an escalation config `{level: int >= 1, severity: ...}`."""
    if not isinstance(config, Mapping):
        return FlextResult.fail("escalation_config: must be a mapping {level, severity}")
    unknown = sorted(str(key) for key in config if key not in ESCALATION_KEYS)
    if unknown:
        return FlextResult.fail(f"escalation_config.{unknown[0]}: is not a known key "
                                f"({', '.join(ESCALATION_KEYS)})")
    level = config.get("level", 1)
    if not isinstance(level, int) or isinstance(level, bool) or level < 1:
        return FlextResult.fail("escalation_config.level: must be an integer >= 1")
    severity = config.get("severity", alert.severity.value)
    if severity not in Severity.__members__.values():
        return FlextResult.fail("escalation_config.severity: must be one of "
                                f"{', '.join(s.value for s in Severity)}")
    wanted = Severity(severity)
    if _SEVERITY_RANK[wanted] < _SEVERITY_RANK[alert.severity]:
        return FlextResult.fail(f"escalation_config.severity: {wanted.value} is below the "
                                f"alert's {alert.severity.value}; an escalation only raises it")
    return FlextResult.ok((level, wanted))


class FlextAlertService(_Service):
    """Fire and resolve alerts; an alert's identity is (name, service, instance, severity,
    labels), so `resolve` takes the same `severity` and `labels` as the `fire` it ends."""

    async def process_alert(self, alert: FlextAlert) -> FlextResult[FlextAlert]:
        """See `process_alert_sync`."""
        return self.process_alert_sync(alert)

    def process_alert_sync(self, alert: FlextAlert) -> FlextResult[FlextAlert]:
        """Send a `FlextAlert` (firing or resolved) to the collector, which passes it on to
        every Alertmanager."""
        return _checked(FlextAlert, alert, "alert").flat_map(self._send)

    send = process_alert_sync

    async def escalate_alert(
        self, alert: FlextAlert, escalation_config: Mapping[str, Any]
    ) -> FlextResult[FlextAlert]:
        """See `escalate_alert_sync`."""
        return self.escalate_alert_sync(alert, escalation_config)

    def escalate_alert_sync(
        self, alert: FlextAlert, escalation_config: Mapping[str, Any]
    ) -> FlextResult[FlextAlert]:
        """Send a firing alert again, escalated: the label `escalation_level` set to
        `escalation_config["level"]` (default 1) and the severity raised to
        `escalation_config["severity"]` when given (never lowered). The alert as it was is
        sent resolved, so that one alert stands for the problem. Returns the escalated one."""
        checked = _checked(FlextAlert, alert, "alert")
        if checked.is_failure:
            return checked
        original = checked.unwrap()
        if original.status != "firing":
            return FlextResult.fail("alert: is resolved; only a firing alert is escalated")
        found = _escalation(original, escalation_config)
        if found.is_failure:
            return FlextResult.fail(str(found.error))
        level, severity = found.unwrap()
        payload = original.to_payload()
        payload.update(severity=severity.value,
                       labels={**original.labels, ESCALATION_LABEL: str(level)})
        escalated = build(FlextAlert, payload)
        if escalated.is_failure:
            return escalated
        if escalated.unwrap().alert_id != original.alert_id:
            resolved = original.to_payload()
            resolved["status"] = "resolved"
            resolved.pop("ends_at", None)
            sent = build(FlextAlert, resolved).flat_map(self._send)
            if sent.is_failure:
                return sent
        return escalated.flat_map(self._send)

    def fire(
        self,
        name: str,
        *,
        severity: str = "warning",
        summary: str = "",
        description: str = "",
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        generator_url: str = "",
    ) -> FlextResult[FlextAlert]:
        return flext_create_alert(
            name, severity, status="firing", service=self._service,
            instance=self._instance, summary=summary, description=description, labels=labels,
            annotations=annotations, generator_url=generator_url,
        ).flat_map(self._send)

    def resolve(
        self,
        name: str,
        *,
        severity: str = "warning",
        summary: str = "",
        description: str = "",
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> FlextResult[FlextAlert]:
        return flext_create_alert(
            name, severity, status="resolved", service=self._service,
            instance=self._instance, summary=summary, description=description, labels=labels,
            annotations=annotations,
        ).flat_map(self._send)


class FlextHealthService(_Service):
    """Health reports of this service; the collector marks it `stale` when they stop.

    The service remembers the checks it last reported per (service, instance): a named
    check (`flext_create_health_check(name=...)`) is added to them and the whole set is
    reported, its status the worst of them; a full report replaces them.
    """

    def __init__(self, client: FlextObservabilityClient | None = None) -> None:
        super().__init__(client)
        self._state = _state(self._client)

    async def execute_health_check(
        self, check: FlextHealthCheck
    ) -> FlextResult[FlextHealthCheck]:
        """See `execute_health_check_sync`."""
        return self.execute_health_check_sync(check)

    def execute_health_check_sync(
        self, check: FlextHealthCheck
    ) -> FlextResult[FlextHealthCheck]:
        """Report `check` to the collector's health API (see the class); returns it."""
        checked = _checked(FlextHealthCheck, check, "check")
        if checked.is_failure:
            return checked
        check = checked.unwrap()
        key = (check.service, check.instance)
        checks = {name: c.model_dump(mode="json", exclude_none=True)
                  for name, c in check.checks.items()}
        with self._state.lock:
            known = self._state.checks.get(key, {})
            if check.name is not None:
                if check.name not in known and len(known) >= MAX_CHECKS:
                    return FlextResult.fail(f"name: {key[0]} already has {MAX_CHECKS} "
                                            "named checks, the most kept")
                checks = {**known, **checks}
            payload = check.to_payload()
            payload["checks"] = checks
            if check.name is not None:
                payload["status"] = worst_status(checks)
            report = build(FlextHealthCheck, payload).flat_map(self._send)
            if report.is_success:
                self._state.checks[key] = checks
        return report.map(lambda _: check)

    send = execute_health_check_sync

    def report(
        self,
        status: str | None = None,
        *,
        checks: Mapping[str, Any] | None = None,
        ttl_seconds: float | None = None,
    ) -> FlextResult[FlextHealthCheck]:
        """`checks` maps a name to a status or `{status, message, observed_value}`; without
        `status` the report takes the worst status of its checks."""
        return flext_create_health_check(
            status, service=self._service, instance=self._instance, checks=checks,
            ttl_seconds=ttl_seconds,
        ).flat_map(self.execute_health_check_sync)


class FlextObservabilityServices:
    """The four services as nested names (the seed's "domain library pattern"):
    `FlextObservabilityServices.MetricsService()` is a `FlextMetricsService` on the
    process-wide client."""

    MetricsService = FlextMetricsService
    TracingService = FlextTracingService
    AlertService = FlextAlertService
    HealthService = FlextHealthService

