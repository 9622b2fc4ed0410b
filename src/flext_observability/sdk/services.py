"""The four services: build entities with the factories and hand them to the client.

Every method returns a `FlextResult`: the entity that was queued, or why none was (the
fields at fault). Nothing here blocks on the network or raises into the caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from flext_observability.sdk.client import FlextObservabilityClient, Payload
from flext_observability.sdk.entities import FlextAlert, FlextHealthCheck, FlextMetric, FlextTrace
from flext_observability.sdk.factories import (
    flext_create_alert,
    flext_create_health_check,
    flext_create_metric,
    flext_create_trace,
)
from flext_observability.sdk.result import FlextResult
from flext_observability.sdk.tracecontext import (
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


class _Service:
    def __init__(self, client: FlextObservabilityClient) -> None:
        self._client = client
        self._service = client.config.service_name
        self._instance = client.config.instance

    def _queue(self, item: E) -> E:
        self._client.send(item)
        return item


class FlextMetricsService(_Service):
    """Counters, gauges and histograms of this service (`job` = the config's service name)."""

    def record(self, metric: FlextMetric) -> FlextResult[FlextMetric]:
        return FlextResult.ok(self._queue(metric))

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
            name, value, type=kind, service=self._service, instance=self._instance,
            labels=labels, unit=unit, description=description, buckets=buckets,
        ).map(self._queue)


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

    `span()` is a context manager that makes the span current while its block runs, so
    nested spans, decorated functions and OpenTelemetry propagators see it. `start_span`
    and `finish_span` do the same without making it current.
    """

    def start_span(
        self,
        name: str,
        *,
        kind: str = "internal",
        attributes: Mapping[str, Any] | None = None,
        parent: ActiveSpan | None = None,
    ) -> FlextResult[ActiveSpan]:
        """Start a span now; fails at once when the name, kind or attributes are invalid."""
        span = self._open(name, kind, attributes, parent)
        return self._build(span, span.start_time).map(lambda _: span)

    def finish_span(
        self, span: ActiveSpan, *, error: BaseException | None = None
    ) -> FlextResult[FlextTrace]:
        """End the span now (recording `error` if given) and queue it."""
        if error is not None:
            span.record_exception(error)
        span.result = self._build(span, time.time_ns()).map(self._queue)
        return span.result

    def record(self, trace: FlextTrace) -> FlextResult[FlextTrace]:
        return FlextResult.ok(self._queue(trace))

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
        span = self._open(name, kind, attributes, None)
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

    def _open(
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


class FlextAlertService(_Service):
    """Fire and resolve alerts; an alert's identity is (name, service, severity, labels),
    so `resolve` takes the same `severity` and `labels` as the `fire` it ends."""

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
            name, severity=severity, status="firing", service=self._service,
            instance=self._instance, summary=summary, description=description, labels=labels,
            annotations=annotations, generator_url=generator_url,
        ).map(self._queue)

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
            name, severity=severity, status="resolved", service=self._service,
            instance=self._instance, summary=summary, description=description, labels=labels,
            annotations=annotations,
        ).map(self._queue)

    def send(self, alert: FlextAlert) -> FlextResult[FlextAlert]:
        return FlextResult.ok(self._queue(alert))


class FlextHealthService(_Service):
    """Health reports of this service; the collector marks it `stale` when they stop."""

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
        ).map(self._queue)

    def send(self, report: FlextHealthCheck) -> FlextResult[FlextHealthCheck]:
        return FlextResult.ok(self._queue(report))
