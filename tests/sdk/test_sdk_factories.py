"""flext_create_*: good input gives the entity; bad input a failure naming the field, no raise."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider

from flext_observability import (
    FlextAlert,
    FlextHealthCheck,
    FlextLogEntry,
    FlextMetric,
    FlextTrace,
    flext_create_alert,
    flext_create_health_check,
    flext_create_log_entry,
    flext_create_metric,
    flext_create_trace,
)
from flext_observability.models.native import Alert, HealthReport, Metric, Span
from flext_observability.sdk.config import default_config


class Unencodable:
    pass


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"

BAD = [
    # (factory, kwargs, the field the error must name)
    (flext_create_metric, {"name": "x", "value": math.nan}, "value: must be a finite number"),
    (flext_create_metric, {"name": "x", "value": math.inf}, "value: must be a finite number"),
    (flext_create_metric, {"name": "x", "value": "12"}, "value:"),
    (flext_create_metric, {"name": "x", "value": True}, "value:"),
    (flext_create_metric, {"name": "x", "value": None}, "value: is required"),
    (flext_create_metric, {"name": "x", "value": Unencodable()}, "value:"),
    (flext_create_metric, {"name": "", "value": 1}, "name:"),
    (flext_create_metric, {"name": "1abc", "value": 1}, "name: must match"),
    (flext_create_metric, {"name": "a b", "value": 1}, "name: must match"),
    (flext_create_metric, {"name": 42, "value": 1}, "name:"),
    (flext_create_metric, {"name": "x", "value": 1, "type": "summary"}, "type:"),
    (flext_create_metric, {"name": "x", "value": -1, "type": "counter"},
     "value: a counter increment must be >= 0"),
    (flext_create_metric, {"name": "x", "value": 1, "service": ""}, "service:"),
    (flext_create_metric, {"name": "x", "value": 1, "service": "s" * 201}, "service:"),
    (flext_create_metric, {"name": "x", "value": 1, "labels": {"job": "a"}}, "labels.job:"),
    (flext_create_metric, {"name": "x", "value": 1, "labels": {"__x": "a"}}, "labels.__x:"),
    (flext_create_metric, {"name": "x", "value": 1, "labels": {"a-b": "a"}}, "labels.a-b:"),
    (flext_create_metric, {"name": "x", "value": 1, "labels": {"code": 200}}, "labels.code:"),
    (flext_create_metric, {"name": "x", "value": 1, "labels": ["a"]}, "labels:"),
    (flext_create_metric, {"name": "x", "value": 1, "buckets": [1, 2]}, "buckets:"),
    (flext_create_metric, {"name": "x", "value": 1, "type": "histogram", "buckets": [2, 1]},
     "buckets: bounds must be strictly increasing"),
    (flext_create_metric, {"name": "x", "value": 1, "timestamp": "yesterday"}, "timestamp:"),
    (flext_create_metric, {"name": "x", "value": 1, "timestamp": datetime(2024, 1, 1)},
     "timestamp: an RFC 3339 time needs a time zone offset"),
    (flext_create_metric, {"name": "x", "value": 1, "timestamp": -5}, "timestamp:"),
    (flext_create_metric, {"name": "x", "value": 1, "timestamp": 1_795_773_000_000},
     "timestamp: 1795773000000 is ambiguous"),
    (flext_create_trace, {"name": ""}, "name:"),
    (flext_create_trace, {"name": "t", "kind": "sideways"}, "kind:"),
    (flext_create_trace, {"name": "t", "trace_id": "xyz"}, "trace_id: must match"),
    (flext_create_trace, {"name": "t", "trace_id": "0" * 32}, "trace_id: must not be all zero"),
    (flext_create_trace, {"name": "t", "span_id": "0" * 16}, "span_id: must not be all zero"),
    (flext_create_trace, {"name": "t", "span_id": "abc"}, "span_id: must match"),
    (flext_create_trace, {"name": "t", "parent_span_id": "0" * 16}, "parent_span_id:"),
    (flext_create_trace, {"name": "t", "start_time": 1_795_773_010, "end_time": 1_795_773_005},
     "end_time: must not be before start_time"),
    (flext_create_trace, {"name": "t", "status": "bad"}, "status.code:"),
    (flext_create_trace, {"name": "t", "attributes": {"a": math.nan}}, "attributes.a:"),
    (flext_create_trace, {"name": "t", "attributes": {"a": {"nested": 1}}}, "attributes.a:"),
    (flext_create_trace, {"name": "t", "attributes": {"a": Unencodable()}}, "attributes.a:"),
    (flext_create_trace, {"name": "t", "events": [{"name": "e"}]}, "events.0.time: is required"),
    (flext_create_trace, {"name": "t", "events": [{"time": 1, "bogus": 1}]}, "events.0.bogus:"),
    (flext_create_alert, {"name": ""}, "name:"),
    (flext_create_alert, {"name": "A", "severity": "fatal"}, "severity:"),
    (flext_create_alert, {"name": "A", "status": "pending"}, "status:"),
    (flext_create_alert, {"name": "A", "labels": {"severity": "x"}}, "labels.severity:"),
    (flext_create_alert, {"name": "A", "annotations": {"": "x"}}, "annotations"),
    (flext_create_alert, {"name": "A", "starts_at": 1_795_773_010, "ends_at": 1_795_773_005},
     "ends_at: must not be before starts_at"),
    (flext_create_health_check, {"status": "fine"}, "status:"),
    (flext_create_health_check, {"checks": {"db": "meh"}}, "checks.db.status:"),
    (flext_create_health_check, {"checks": {"db": {"status": "healthy", "x": 1}}},
     "checks.db.x: is not a known field"),
    (flext_create_health_check, {"checks": ["db"]}, "checks:"),
    (flext_create_health_check, {"ttl_seconds": 0}, "ttl_seconds:"),
    (flext_create_health_check, {"ttl_seconds": math.inf}, "ttl_seconds:"),
    (flext_create_log_entry, {"message": None}, "message: is required"),
    (flext_create_log_entry, {"message": "m", "level": "loud"}, "level:"),
    (flext_create_log_entry, {"message": "m", "span_id": SPAN}, "span_id: needs a trace_id"),
    (flext_create_log_entry, {"message": "m", "trace_id": "0" * 32},
     "trace_id: must not be all zero"),
    (flext_create_log_entry, {"message": "m", "attributes": {"": 1}}, "attributes"),
]


@pytest.mark.parametrize(
    ("factory", "kwargs", "expected"), BAD,
    ids=[f"{f.__name__}-{i}" for i, (f, _, _) in enumerate(BAD)],
)
def test_bad_input_is_a_failure_naming_the_field(factory, kwargs, expected):
    result = factory(**kwargs)
    assert result.is_failure
    assert expected in result.error


def test_several_bad_fields_are_all_named():
    result = flext_create_metric("", math.nan, type="counter", labels={"job": "x"})
    assert "name:" in result.error
    assert "value: must be a finite number" in result.error


def test_union_alternatives_are_one_message():
    result = flext_create_trace("t", attributes={"a": Unencodable()})
    assert result.error == (
        "attributes.a: Input should be a valid string, boolean, integer, number or array"
    )


def test_metric_defaults_and_payload():
    metric = flext_create_metric("jobs.done", 3, type="counter", labels={"queue": "q"}).unwrap()
    assert isinstance(metric, FlextMetric)
    assert isinstance(metric, Metric)
    assert metric.service == default_config().service_name
    assert metric.timestamp > 0
    payload = metric.to_payload()
    assert payload["type"] == "counter"
    assert "buckets" not in payload
    assert Metric.model_validate_json(json.dumps(payload)).model_dump() == metric.model_dump()


def test_aware_datetime_is_accepted():
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    metric = flext_create_metric("x", 1, timestamp=moment).unwrap()
    assert metric.timestamp == int(moment.timestamp()) * 1_000_000_000


def test_trace_is_a_root_without_a_current_span():
    trace = flext_create_trace("load", attributes={"rows": 3}).unwrap()
    assert isinstance(trace, FlextTrace)
    assert isinstance(trace, Span)
    assert trace.parent_span_id is None
    assert trace.end_time >= trace.start_time
    assert trace.to_payload()["status"] == {"code": "unset", "message": ""}


def test_trace_joins_the_current_opentelemetry_span():
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:
        trace = flext_create_trace("inner").unwrap()
        entry = flext_create_log_entry("hello").unwrap()
    context = outer.get_span_context()
    assert trace.trace_id == format(context.trace_id, "032x")
    assert trace.parent_span_id == format(context.span_id, "016x")
    assert (entry.trace_id, entry.span_id) == (trace.trace_id, trace.parent_span_id)


def test_explicit_ids_are_kept():
    trace = flext_create_trace("t", trace_id=TRACE, span_id=SPAN, kind="server").unwrap()
    assert (trace.trace_id, trace.span_id, trace.kind.value) == (TRACE, SPAN, "server")


def test_alert():
    alert = flext_create_alert(
        "DiskFull", severity="critical", summary="disk", labels={"mount": "/"}
    ).unwrap()
    assert isinstance(alert, FlextAlert)
    assert isinstance(alert, Alert)
    assert alert.status.value == "firing"
    assert alert.starts_at is None  # the collector keeps the first start


@pytest.mark.parametrize(
    ("checks", "status"),
    [
        (None, "healthy"),
        ({"db": "healthy"}, "healthy"),
        ({"db": "healthy", "cache": "degraded"}, "degraded"),
        ({"db": {"status": "unhealthy", "message": "down"}, "cache": "degraded"}, "unhealthy"),
    ],
)
def test_health_status_is_the_worst_check(checks, status):
    report = flext_create_health_check(checks=checks).unwrap()
    assert isinstance(report, FlextHealthCheck)
    assert isinstance(report, HealthReport)
    assert report.status.value == status


def test_health_explicit_status_wins():
    report = flext_create_health_check("degraded", checks={"db": "healthy"}).unwrap()
    assert report.status.value == "degraded"
    assert report.checks["db"].status.value == "healthy"


def test_log_entry():
    entry = flext_create_log_entry("started", level="warning", attributes={"port": 80}).unwrap()
    assert isinstance(entry, FlextLogEntry)
    assert entry.trace_id is None
    assert entry.level.value == "warning"
