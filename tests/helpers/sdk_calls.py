"""The SDK's nested decorated calls, as the span tests make them.

Inside an OpenTelemetry span ``request``, ``outer.job`` calls ``inner.step``, which raises
``ValueError("boom")`` (``outer`` swallows it). So ``outer.job`` is a child of ``request``,
``inner.step`` a child of ``outer.job`` with status error and an ``exception`` event, and
both carry ``code.namespace`` == this module's name.
"""

from __future__ import annotations

import contextlib

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanContext

from flext_observability import FlextObservabilityMasterFactory, flext_monitor_function

OUTER, INNER = "outer.job", "inner.step"


def run_nested_calls(factory: FlextObservabilityMasterFactory) -> SpanContext:
    """Make the calls, flush the factory (asserting it emptied); the ``request`` span's context."""

    @flext_monitor_function(INNER, factory=factory)
    def inner() -> None:
        raise ValueError("boom")

    @flext_monitor_function(OUTER, factory=factory)
    def outer() -> None:
        with contextlib.suppress(ValueError):
            inner()

    with TracerProvider().get_tracer("app").start_as_current_span("request") as request:
        outer()
    assert factory.flush(10)
    return request.get_span_context()
