"""Span ids, the current span, and exception events: shared by the decorator and the tracer.

The current span lives in OpenTelemetry's context (contextvars). Our spans are made
current there as a `NonRecordingSpan`, so nested calls find their parent, OpenTelemetry
spans started inside become children, and propagators write our span in `traceparent`.
"""

from __future__ import annotations

import random
import traceback
from contextvars import Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.context import Context

SAMPLED = otel_trace.TraceFlags(otel_trace.TraceFlags.SAMPLED)
# What `activate` returns and `deactivate` takes back.
ContextToken = Token[Context]
MAX_TEXT = 8192  # models.native.Text: the longest string attribute the collector accepts


# Trace and span ids must be unique, not secret: a PRNG, as OpenTelemetry's RandomIdGenerator.
def new_trace_id() -> int:
    while True:
        trace_id = random.getrandbits(128)  # nosec B311
        if trace_id:
            return trace_id


def new_span_id() -> int:
    while True:
        span_id = random.getrandbits(64)  # nosec B311
        if span_id:
            return span_id


def current_parent() -> tuple[int, int]:
    """(trace id, parent span id) for a new span: the current span's, or a new trace and 0."""
    parent = otel_trace.get_current_span().get_span_context()
    if parent.is_valid:
        return parent.trace_id, parent.span_id
    return new_trace_id(), 0


def activate(trace_id: int, span_id: int) -> ContextToken:
    """Make the span current (for us and for OpenTelemetry); returns the token to restore."""
    span_context = otel_trace.SpanContext(trace_id, span_id, False, SAMPLED)
    return otel_context.attach(
        otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(span_context))
    )


def enter_span() -> tuple[tuple[int, int, int], ContextToken]:
    """Start a span under the current one and make it current, in one context lookup.

    Returns ((trace id, span id, parent span id or 0), the token for `deactivate`).
    """
    context = otel_context.get_current()
    parent = otel_trace.get_current_span(context).get_span_context()
    if parent.is_valid:
        trace_id, parent_id = parent.trace_id, parent.span_id
    else:
        trace_id, parent_id = new_trace_id(), 0
    span_id = new_span_id()
    span = otel_trace.NonRecordingSpan(otel_trace.SpanContext(trace_id, span_id, False, SAMPLED))
    token = otel_context.attach(otel_trace.set_span_in_context(span, context))
    return (trace_id, span_id, parent_id), token


def deactivate(token: ContextToken) -> None:
    otel_context.detach(token)


def trace_hex(trace_id: int) -> str:
    return format(trace_id, "032x")


def span_hex(span_id: int) -> str:
    return format(span_id, "016x")


def exception_type(exc: BaseException) -> str:
    """`ValueError` for builtins, `package.module.Error` otherwise."""
    kind = type(exc)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def exception_message(exc: BaseException) -> str:
    try:
        return str(exc)[:MAX_TEXT]
    except Exception:
        return f"<unprintable {type(exc).__qualname__}>"


def exception_event(exc: BaseException, time_ns: int) -> dict[str, Any]:
    """The OpenTelemetry `exception` span event: type, message and stack trace."""
    try:
        stacktrace = "".join(traceback.format_exception(exc))
    except Exception:
        stacktrace = ""
    return {
        "name": "exception",
        "time": time_ns,
        "attributes": {
            "exception.type": exception_type(exc),
            "exception.message": exception_message(exc),
            "exception.stacktrace": stacktrace[-MAX_TEXT:],
        },
    }


def error_status(exc: BaseException) -> dict[str, str]:
    message = f"{exception_type(exc)}: {exception_message(exc)}"
    return {"code": "error", "message": message[:MAX_TEXT]}
