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
    # the seed's forms
    (flext_create_metric, {"name": "x", "value": 1, "unit": 5}, "unit:"),
    (flext_create_metric, {"name": "x", "value": 1, "unit": "u" * 65}, "unit:"),
    (flext_create_trace, {"name": "t", "operation": ""}, "operation: must be a non-empty"),
    (flext_create_trace, {"name": "t", "operation": 5}, "operation: must be a non-empty"),
    (flext_create_trace, {"name": "t", "context": ["a"]}, "context: must be a mapping"),
    (flext_create_trace, {"name": "t", "context": {"a": {"n": 1}}}, "context.a:"),
    (flext_create_trace, {"name": "t", "context": {"a": math.nan}}, "context.a:"),
    (flext_create_trace, {"name": "t", "context": {"a": Unencodable()}}, "context.a:"),
    (flext_create_trace, {"name": "t", "context": {"traceparent": "bogus"}},
     "context.traceparent: must be a W3C traceparent"),
    (flext_create_trace, {"name": "t", "context": {"traceparent": f"00-{'0' * 32}-{SPAN}-01"}},
     "context.traceparent:"),
    (flext_create_trace, {"name": "t", "context": {"traceparent": f"ff-{TRACE}-{SPAN}-01"}},
     "context.traceparent:"),
    (flext_create_trace, {"name": "t", "attributes": ["a"]}, "attributes: must be a mapping"),
    (flext_create_alert, {"name": "", "severity": "warning", "message": "m"}, "name:"),
    (flext_create_alert, {"name": "A", "severity": "urgent", "message": "m"}, "severity:"),
    (flext_create_alert, {"name": "A", "message": 5}, "message: must be a string"),
    (flext_create_alert, {"name": "A", "message": "m", "summary": "s"}, "message:"),
    (flext_create_alert, {"name": "A", "message": "m" * 9000}, "summary:"),
    (flext_create_alert, {"name": "A", "source": ""}, "source: must be a non-empty string"),
    (flext_create_alert, {"name": "A", "source": 3}, "source: must be a non-empty string"),
    (flext_create_alert, {"name": "A", "source": "s", "labels": {"source": "t"}}, "source:"),
    (flext_create_alert, {"name": "A", "source": "s", "labels": ["x"]}, "labels:"),
    (flext_create_health_check, {"name": "db"}, "status: is required for a named check"),
    (flext_create_health_check, {"name": "db", "status": "fine"}, "status: must be one of"),
    (flext_create_health_check, {"name": "", "status": "healthy"}, "name:"),
    (flext_create_health_check, {"name": 5, "status": "healthy"}, "name:"),
    (flext_create_health_check, {"details": {"a": 1}}, "details: describe a named check"),
    (flext_create_health_check, {"name": "db", "status": "healthy", "details": "x"},
     "details: must be a mapping"),
    (flext_create_health_check, {"name": "db", "status": "healthy", "checks": {"db": "healthy"}},
     "name: 'db' is also a key of checks"),
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


# -- the seed's positional and keyword forms, and what each argument becomes on the wire --


def test_metric_positional_name_value_unit():
    metric = flext_create_metric("cpu_usage", 85.2, "percent").unwrap()
    assert (metric.name, metric.value, metric.unit) == ("cpu_usage", 85.2, "percent")
    payload = metric.to_payload()
    assert (payload["type"], payload["unit"]) == ("gauge", "percent")


def test_trace_positional_operation_is_an_attribute():
    trace = flext_create_trace("user_login", "auth-service").unwrap()
    assert trace.operation == "auth-service"
    assert trace.to_payload()["attributes"] == {"flext.operation": "auth-service"}
    assert trace.service == default_config().service_name


def test_trace_context_traceparent_joins_the_remote_trace_and_entries_become_attributes():
    trace = flext_create_trace(
        name="checkout",
        operation="shop.checkout",
        context={"traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": "a=b", "tenant": "eu",
                 "retries": 2},
    ).unwrap()
    assert (trace.trace_id, trace.parent_span_id) == (TRACE, SPAN)
    assert trace.span_id != SPAN
    assert trace.attributes == {"tenant": "eu", "retries": 2, "flext.operation": "shop.checkout"}


def test_trace_operation_and_attributes_win_over_context_entries():
    trace = flext_create_trace("t", "op", context={"flext.operation": "ctx", "a": 1, "b": 1},
                               attributes={"a": 2}).unwrap()
    assert trace.attributes == {"flext.operation": "op", "a": 2, "b": 1}


def test_trace_context_without_traceparent_joins_the_current_span():
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:
        trace = flext_create_trace("inner", context={"k": "v"}).unwrap()
    assert trace.trace_id == format(outer.get_span_context().trace_id, "032x")


def test_alert_positional_name_severity_message_and_source():
    alert = flext_create_alert("high_cpu", "warning", "CPU usage > 80%").unwrap()
    assert (alert.name, alert.severity, alert.summary) == ("high_cpu", "warning",
                                                           "CPU usage > 80%")
    sourced = flext_create_alert(name="high_cpu", severity="critical", message="hot",
                                 source="node-1", labels={"rack": "r1"}).unwrap()
    assert sourced.labels == {"rack": "r1", "source": "node-1"}
    assert sourced.to_payload()["summary"] == "hot"


def test_alert_id_follows_the_alertmanager_identity():
    def alert_id(**kwargs):
        fields = {"name": "A", "service": "s", **kwargs}
        return flext_create_alert(**fields).unwrap().alert_id

    assert len(alert_id()) == 16
    assert alert_id() == alert_id(status="resolved", message="other text")
    assert alert_id() != alert_id(severity="critical")
    assert alert_id() != alert_id(labels={"queue": "q"})
    assert alert_id() != alert_id(instance="host-1")
    assert alert_id(labels={"a": "1", "b": "2"}) == alert_id(labels={"b": "2", "a": "1"})


def test_health_check_named_with_details():
    check = flext_create_health_check(
        name="database", status="degraded", details={"checked_at": "now", "component": "db"}
    ).unwrap()
    assert check.name == "database"
    assert check.status == "degraded"
    assert check.checks["database"].message == "checked_at=now, component=db"
    payload = check.to_payload()
    assert "name" not in payload
    assert HealthReport.model_validate_json(json.dumps(payload)).checks["database"].status \
        == "degraded"


def test_health_check_named_beside_other_checks_takes_the_worst():
    check = flext_create_health_check(name="db", status="healthy",
                                      checks={"disk": "unhealthy"}).unwrap()
    assert set(check.checks) == {"db", "disk"}
    assert check.status == "unhealthy"
