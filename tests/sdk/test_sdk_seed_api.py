"""The seed's service API: async methods and their `_sync` twins, no-argument services on the
process-wide client, FlextObservabilityServices, the monitor, constants, types, protocols.

Everything is sent to a stub collector that validates each body with the collector's own
models; bad input must come back as a failed FlextResult naming the field, with nothing
given to the client.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from typing import get_args

import pytest

from flext_observability import (
    FlextAlertService,
    FlextHealthService,
    FlextMetric,
    FlextMetricsService,
    FlextObservabilityConstants,
    FlextObservabilityMonitor,
    FlextObservabilityProtocols,
    FlextObservabilityServices,
    FlextObservabilityTypes,
    FlextTracingService,
    flext_create_alert,
    flext_create_health_check,
    flext_create_metric,
    flext_create_trace,
)
from flext_observability.models import native


@pytest.fixture
def factory(stub_collector, make_factory):
    return make_factory(stub_collector.url, instance="host-1")


def run(coroutine):
    return asyncio.run(coroutine)


# -- metrics ----------------------------------------------------------------------------


def test_record_metric_takes_an_entity_or_name_value_unit(factory, stub_collector):
    metrics = FlextMetricsService(factory.client)
    made = flext_create_metric("api_requests", 42, "count", service="other").unwrap()
    assert run(metrics.record_metric(made)).unwrap() == made
    recorded = run(metrics.record_metric("operation_start", 1.0, "count")).unwrap()
    assert isinstance(recorded, FlextMetric)
    assert metrics.record_metric_sync("queue_depth", 3, type="counter").is_success
    assert factory.flush(5)
    sent = stub_collector.items("metrics")
    assert [(m["name"], m["value"], m.get("unit"), m["service"]) for m in sent] == [
        ("api_requests", 42, "count", "other"),
        ("operation_start", 1.0, "count", "sdk-test"),
        ("queue_depth", 3, "", "sdk-test"),
    ]
    assert sent[2]["type"] == "counter"
    assert sent[1]["instance"] == "host-1"


def test_collect_metrics_sends_each_entry_for_the_service(factory, stub_collector):
    result = run(FlextMetricsService(factory.client).collect_metrics(
        "billing", {"cpu_usage": {"value": 85.2, "unit": "percent"}, "jobs": 3,
                    "done": {"value": 2, "type": "counter", "labels": {"queue": "q"}}},
    ))
    assert [m.name for m in result.unwrap()] == ["cpu_usage", "jobs", "done"]
    assert factory.flush(5)
    sent = stub_collector.items("metrics")
    assert {m["service"] for m in sent} == {"billing"}
    assert [(m["name"], m["value"], m["type"]) for m in sent] == [
        ("cpu_usage", 85.2, "gauge"), ("jobs", 3, "gauge"), ("done", 2, "counter")]
    assert sent[0]["unit"] == "percent"
    assert sent[2]["labels"] == {"queue": "q"}


# -- traces -----------------------------------------------------------------------------


def test_start_then_complete_trace_sends_one_ok_span(factory, stub_collector):
    tracing = FlextTracingService(factory.client)
    trace = flext_create_trace("user_login", "auth-service").unwrap()
    started = run(tracing.start_trace(trace)).unwrap()
    assert (started.trace_id, started.span_id) == (trace.trace_id, trace.span_id)
    assert factory.flush(5)
    assert stub_collector.items("spans") == []  # nothing until it ends
    completed = run(tracing.complete_trace(trace)).unwrap()
    assert completed.status.code == "ok"
    assert completed.start_time == started.start_time <= completed.end_time
    assert factory.flush(5)
    (sent,) = stub_collector.items("spans")
    assert sent["span_id"] == trace.span_id
    assert sent["status"]["code"] == "ok"
    assert sent["attributes"] == {"flext.operation": "auth-service"}


def test_start_trace_by_name_and_error_trace(factory, stub_collector):
    tracing = FlextTracingService(factory.client)
    trace = tracing.start_trace_sync("orders_monitoring", "orders.poll",
                                     context={"queue": "eu"}).unwrap()
    ended = run(tracing.error_trace(trace, "database timeout")).unwrap()
    assert (ended.status.code, ended.status.message) == ("error", "database timeout")
    assert factory.flush(5)
    (sent,) = stub_collector.items("spans")
    assert sent["name"] == "orders_monitoring"
    assert sent["status"] == {"code": "error", "message": "database timeout"}
    assert sent["attributes"] == {"queue": "eu", "flext.operation": "orders.poll"}


def test_error_trace_message_is_cut_at_8_kib(factory, stub_collector):
    tracing = FlextTracingService(factory.client)
    trace = tracing.start_trace_sync("t").unwrap()
    assert len(tracing.error_trace_sync(trace, "x" * 10_000).unwrap().status.message) == 8192


def test_a_trace_ends_once(factory):
    tracing = FlextTracingService(factory.client)
    trace = tracing.start_trace_sync("t").unwrap()
    assert "already started" in tracing.start_trace_sync(trace).error
    assert tracing.complete_trace_sync(trace).is_success
    assert "not started or already ended" in tracing.complete_trace_sync(trace).error
    assert "not started or already ended" in tracing.error_trace_sync(trace, "x").error
    never_started = flext_create_trace("u").unwrap()
    assert "start_trace it first" in tracing.complete_trace_sync(never_started).error
    assert factory.client.stats.enqueued == 1


def test_an_invalid_change_to_a_started_trace_is_refused_and_it_stays_open(factory):
    tracing = FlextTracingService(factory.client)
    trace = tracing.start_trace_sync("t").unwrap()
    trace.attributes["bad"] = {"nested": 1}
    assert "attributes.bad" in tracing.complete_trace_sync(trace).error
    del trace.attributes["bad"]
    assert tracing.complete_trace_sync(trace).is_success


def test_traces_still_open_at_close_are_sent_marked_unfinished(factory, stub_collector, caplog):
    tracing = FlextTracingService(factory.client)
    trace = tracing.start_trace_sync("never_completed").unwrap()
    assert factory.close(5)
    (sent,) = stub_collector.items("spans")
    assert sent["span_id"] == trace.span_id
    assert sent["attributes"] == {"flext.span.unfinished": True}
    assert sent["status"]["code"] == "unset"
    assert "1 trace(s) started with start_trace were never completed" in caplog.text


# -- alerts -----------------------------------------------------------------------------


def test_process_alert_sends_it(factory, stub_collector):
    alerts = FlextAlertService(factory.client)
    alert = flext_create_alert("high_cpu", "warning", "CPU usage > 80%", source="node-1")
    processed = run(alerts.process_alert(alert.unwrap())).unwrap()
    assert processed.alert_id == alert.unwrap().alert_id
    assert factory.flush(5)
    (sent,) = stub_collector.items("alerts")
    assert (sent["name"], sent["severity"], sent["summary"]) == (
        "high_cpu", "warning", "CPU usage > 80%")
    assert sent["labels"] == {"source": "node-1"}


def test_escalate_alert_raises_severity_adds_the_level_and_resolves_the_original(
    factory, stub_collector
):
    alerts = FlextAlertService(factory.client)
    alert = flext_create_alert("high_cpu", "warning", "hot", source="node-1").unwrap()
    assert alerts.process_alert_sync(alert).is_success
    escalated = run(alerts.escalate_alert(alert, {"level": 2, "severity": "critical"})).unwrap()
    assert (escalated.severity, escalated.labels) == (
        "critical", {"source": "node-1", "escalation_level": "2"})
    assert escalated.alert_id != alert.alert_id
    assert factory.flush(5)
    sent = stub_collector.items("alerts")
    assert [(a["severity"], a["status"], a["labels"].get("escalation_level")) for a in sent] == [
        ("warning", "firing", None), ("warning", "resolved", None),
        ("critical", "firing", "2")]
    assert sent[2]["summary"] == "hot"


def test_escalate_alert_keeps_the_severity_unless_told(factory, stub_collector):
    alerts = FlextAlertService(factory.client)
    alert = flext_create_alert("A", "critical", "m").unwrap()
    escalated = alerts.escalate_alert_sync(alert, {}).unwrap()
    assert (escalated.severity, escalated.labels["escalation_level"]) == ("critical", "1")


# -- health -----------------------------------------------------------------------------


def named_check(name, status, **fields):
    """A named check of the `factory` fixture's service and instance."""
    return flext_create_health_check(name=name, status=status, service="sdk-test",
                                     instance="host-1", **fields).unwrap()


def test_named_checks_add_up_in_the_reported_health(factory, stub_collector):
    health = FlextHealthService(factory.client)
    database = named_check("database", "healthy", details={"component": "database"})
    cache = named_check("cache", "degraded")
    assert run(health.execute_health_check(database)).unwrap() == database
    assert health.execute_health_check_sync(cache).unwrap() == cache
    assert factory.flush(5)
    first, second = stub_collector.items("health")
    assert (first["status"], set(first["checks"])) == ("healthy", {"database"})
    assert (second["status"], set(second["checks"])) == ("degraded", {"database", "cache"})
    assert second["checks"]["database"]["message"] == "component=database"
    # A full report replaces the checks the service reports.
    assert health.report(checks={"disk": "healthy"}).is_success
    assert health.execute_health_check_sync(named_check("cache", "healthy")).is_success
    assert factory.flush(5)
    third, fourth = stub_collector.items("health")[2:]
    assert set(third["checks"]) == {"disk"}
    assert (fourth["status"], set(fourth["checks"])) == ("healthy", {"disk", "cache"})


def test_named_checks_add_up_per_service_and_instance(factory, stub_collector):
    health = FlextHealthService(factory.client)
    assert health.execute_health_check_sync(named_check("db", "healthy")).is_success
    other = flext_create_health_check(name="queue", status="unhealthy", service="other")
    assert health.execute_health_check_sync(other.unwrap()).is_success
    assert factory.flush(5)
    mine, theirs = stub_collector.items("health")
    assert (mine["service"], set(mine["checks"])) == ("sdk-test", {"db"})
    assert (theirs["service"], set(theirs["checks"]), theirs["status"]) == (
        "other", {"queue"}, "unhealthy")


# -- bad input: a failure naming the field, and nothing given to the client --------------


def _trace():
    return flext_create_trace("t").unwrap()


BAD_CALLS = [
    # (service, method, args, the text the error must hold)
    ("metrics", "record_metric", (42,), "metric: must be a FlextMetric, not int"),
    ("metrics", "record_metric", ("x",), "value: is required"),
    ("metrics", "record_metric", ("x", None, "count"), "value: is required"),
    ("metrics", "record_metric", ("",), "name:"),
    ("metrics", "record_metric", ("x", math.nan, "count"), "value: must be a finite number"),
    ("metrics", "record_metric", ("x", "12", "count"), "value:"),
    ("metrics", "record_metric", ("bad name", 1.0), "name: must match"),
    ("metrics", "record_metric", ("x", 1.0, 7), "unit:"),
    ("metrics", "record_metric", (None,), "metric: must be a FlextMetric"),
    ("metrics", "record_metric", ({"name": "x"},), "metric: must be a FlextMetric"),
    ("metrics", "collect_metrics", ("", {"a": 1}), "service:"),
    ("metrics", "collect_metrics", (5, {"a": 1}), "service:"),
    ("metrics", "collect_metrics", ("svc", {}), "metrics_config: must be a non-empty"),
    ("metrics", "collect_metrics", ("svc", [1]), "metrics_config: must be a non-empty"),
    ("metrics", "collect_metrics", ("svc", {"a": {"value": math.nan}}),
     "metrics_config.a.value: must be a finite number"),
    ("metrics", "collect_metrics", ("svc", {"a": {"unit": "count"}}),
     "metrics_config.a.value: is required"),
    ("metrics", "collect_metrics", ("svc", {"a": "high"}), "metrics_config.a: must be a number"),
    ("metrics", "collect_metrics", ("svc", {"a": True}), "metrics_config.a: must be a number"),
    ("metrics", "collect_metrics", ("svc", {"a": {"value": 1, "colour": "red"}}),
     "metrics_config.a.colour: is not a known key"),
    ("metrics", "collect_metrics", ("svc", {"": 1}), "metrics_config..name:"),
    ("metrics", "collect_metrics", ("svc", {"ok": 1, "b c": 2}), "metrics_config.b c.name:"),
    ("tracing", "start_trace", ("",), "name:"),
    ("tracing", "start_trace", (42,), "trace: must be a FlextTrace"),
    ("tracing", "start_trace", ("t", ""), "operation: must be a non-empty string"),
    ("tracing", "complete_trace", ("t",), "trace: must be a FlextTrace"),
    ("tracing", "complete_trace", (None,), "trace: must be a FlextTrace"),
    ("tracing", "error_trace", ("t", "m"), "trace: must be a FlextTrace"),
    ("tracing", "error_trace", (_trace, 42), "message: must be a string"),
    ("alerts", "process_alert", ("high_cpu",), "alert: must be a FlextAlert"),
    ("alerts", "process_alert", (None,), "alert: must be a FlextAlert"),
    ("alerts", "escalate_alert", ("high_cpu", {}), "alert: must be a FlextAlert"),
    ("alerts", "escalate_alert", ("ALERT", [2]), "escalation_config: must be a mapping"),
    ("alerts", "escalate_alert", ("ALERT", {"level": 0}), "escalation_config.level:"),
    ("alerts", "escalate_alert", ("ALERT", {"level": "2"}), "escalation_config.level:"),
    ("alerts", "escalate_alert", ("ALERT", {"level": True}), "escalation_config.level:"),
    ("alerts", "escalate_alert", ("ALERT", {"severity": "fatal"}),
     "escalation_config.severity: must be one of critical, warning, info"),
    ("alerts", "escalate_alert", ("ALERT", {"severity": "info"}),
     "escalation_config.severity: info is below the alert's warning"),
    ("alerts", "escalate_alert", ("ALERT", {"sevrity": "critical"}),
     "escalation_config.sevrity: is not a known key"),
    ("alerts", "escalate_alert", ("RESOLVED", {"level": 2}), "alert: is resolved"),
    ("health", "execute_health_check", ("db",), "check: must be a FlextHealthCheck"),
    ("health", "execute_health_check", ({"db": "healthy"},), "check: must be a FlextHealthCheck"),
]


def _argument(value):
    if value == "ALERT":
        return flext_create_alert("high_cpu", "warning", "m").unwrap()
    if value == "RESOLVED":
        return flext_create_alert("high_cpu", status="resolved").unwrap()
    return value() if value is _trace else value


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize(("service", "method", "args", "expected"), BAD_CALLS,
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(BAD_CALLS)])
def test_bad_input_through_every_service_method(factory, stub_collector, service, method,
                                                args, expected, sync):
    target = getattr(factory, service)
    args = tuple(_argument(a) for a in args)
    result = (getattr(target, f"{method}_sync")(*args) if sync
              else run(getattr(target, method)(*args)))
    assert result.is_failure
    assert expected in result.error
    assert factory.client.stats.enqueued == 0
    assert factory.flush(5)
    assert not stub_collector.requests


@pytest.mark.parametrize(
    ("mutate", "send", "field"),
    [
        (lambda m: setattr(m, "value", math.nan), lambda f, m: f.metrics.record(m), "value:"),
        (lambda m: setattr(m, "name", ""), lambda f, m: f.metrics.record(m), "name:"),
    ],
)
def test_an_entity_changed_after_it_was_made_is_validated_again(factory, stub_collector,
                                                                 mutate, send, field):
    metric = flext_create_metric("x", 1.0).unwrap()
    mutate(metric)
    result = send(factory, metric)
    assert field in result.error
    assert factory.client.stats.enqueued == 0


def test_changed_alert_and_health_check_are_validated_again(factory):
    alert = flext_create_alert("A").unwrap()
    alert.labels["severity"] = "x"
    assert "labels.severity" in factory.alerts.process_alert_sync(alert).error
    check = flext_create_health_check(name="db", status="healthy").unwrap()
    check.ttl_seconds = -1.0
    assert "ttl_seconds" in factory.health.execute_health_check_sync(check).error
    trace = flext_create_trace("t").unwrap()
    trace.kind = "sideways"
    assert "kind" in factory.tracing.record(trace).error
    assert factory.client.stats.enqueued == 0


def test_after_close_every_method_fails_instead_of_dropping(factory, stub_collector):
    trace = factory.tracing.start_trace_sync("open").unwrap()
    assert factory.close(5)
    sent = len(stub_collector.items("spans"))  # the open trace, sent as unfinished
    calls = [
        factory.metrics.record_metric_sync("x", 1.0),
        factory.metrics.record_metric_sync(flext_create_metric("x", 1.0).unwrap()),
        factory.metrics.collect_metrics_sync("svc", {"x": 1}),
        factory.metrics.record_gauge("x", 1),
        factory.tracing.start_trace_sync("t"),
        factory.tracing.complete_trace_sync(trace),
        factory.tracing.record(flext_create_trace("t").unwrap()),
        factory.alerts.process_alert_sync(flext_create_alert("A").unwrap()),
        factory.alerts.escalate_alert_sync(flext_create_alert("A").unwrap(), {"level": 2}),
        factory.alerts.fire("A"),
        factory.health.execute_health_check_sync(flext_create_health_check().unwrap()),
        factory.health.report("healthy"),
    ]
    for result in calls:
        assert result.is_failure
        assert result.error.startswith("client: closed")
    assert factory.client.stats.dropped == 0
    assert len(stub_collector.items("spans")) == sent


# -- no-argument services, nested names --------------------------------------------------


def test_no_argument_services_use_the_process_wide_client(stub_collector, tmp_path):
    code = '''
import asyncio
from flext_observability import (
    FlextObservabilityServices, FlextTracingService, flext_create_alert,
    flext_create_health_check, get_global_factory,
)

async def main():
    metrics = FlextObservabilityServices.MetricsService()
    assert (await metrics.record_metric("queue_depth", 4.0, "count")).is_success
    tracing = FlextTracingService()
    trace = (await tracing.start_trace("job")).unwrap()
    assert (await FlextObservabilityServices.TracingService().complete_trace(trace)).is_success
    alerts = FlextObservabilityServices.AlertService()
    assert (await alerts.process_alert(flext_create_alert("A", "info", "m").unwrap())).is_success
    health = FlextObservabilityServices.HealthService()
    check = flext_create_health_check(name="db", status="healthy").unwrap()
    assert (await health.execute_health_check(check)).is_success
    assert get_global_factory().client.stats.enqueued == 4

asyncio.run(main())
'''
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEXT_OBS_", "OTEL_"))}
    env.update(FLEXT_OBS_ENDPOINT=stub_collector.url, FLEXT_OBS_SERVICE_NAME="no-args")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for kind in ("metrics", "spans", "alerts", "health"):
        (item,) = stub_collector.items(kind)
        assert item["service"] == "no-args", kind


def test_nested_names_are_the_services():
    assert FlextObservabilityServices.MetricsService is FlextMetricsService
    assert FlextObservabilityServices.TracingService is FlextTracingService
    assert FlextObservabilityServices.AlertService is FlextAlertService
    assert FlextObservabilityServices.HealthService is FlextHealthService


# -- monitor ----------------------------------------------------------------------------


def test_monitor_start_decorate_flush_stop(factory, stub_collector):
    monitor = FlextObservabilityMonitor(factory)
    assert monitor.start().unwrap() is monitor
    assert monitor.is_running

    @monitor.function("monitored.step")
    def step(x: int) -> int:
        return 2 * x

    assert step(4) == 8
    assert monitor.flush(5).unwrap().sent >= 2  # the counter and the span at least
    (span,) = stub_collector.items("spans")
    assert (span["name"], span["service"]) == ("monitored.step", "sdk-test")
    assert monitor.stop(5).is_success
    assert not monitor.is_running
    assert monitor.stop(5).is_success  # twice is fine
    assert "closed" in monitor.start().error


def test_monitor_as_a_context_manager(factory, stub_collector):
    with FlextObservabilityMonitor(factory) as monitor:
        assert monitor.factory.metrics.record_gauge("g", 1).is_success
    assert not monitor.is_running
    assert len(stub_collector.items("metrics")) == 1


def test_monitor_flush_and_stop_fail_when_the_collector_is_unreachable(
    make_factory, unused_endpoint
):
    factory = make_factory(unused_endpoint, max_retry_elapsed=0.1, max_retry_delay=0.05)
    monitor = FlextObservabilityMonitor(factory)
    factory.metrics.record_gauge("g", 1)
    assert "flush:" in monitor.flush(5).error
    factory.metrics.record_gauge("g", 2)
    assert "stop:" in monitor.stop(0.2).error


# -- constants, types, protocols --------------------------------------------------------


def test_constants_are_the_values_the_models_accept():
    constants = FlextObservabilityConstants
    assert tuple(s.value for s in native.Severity) == constants.SEVERITIES
    assert constants.METRIC_TYPES == ("counter", "gauge", "histogram")
    assert constants.HEALTH_STATUSES == ("healthy", "degraded", "unhealthy")
    assert constants.DEFAULT_ENDPOINT == "http://127.0.0.1:4318"
    assert constants.ENV_PREFIX == "FLEXT_OBS_"
    assert constants.OTEL_VARIABLES["service_name"] == "OTEL_SERVICE_NAME"
    assert constants.SIGNAL_PATHS["alerts"] == "/api/v1/alerts"
    assert constants.CALLS_METRIC == "flext_function_calls"
    with pytest.raises(TypeError):
        constants.SIGNAL_PATHS["alerts"] = "/elsewhere"


@pytest.mark.parametrize(
    ("alias", "enum"),
    [("Severity", native.Severity), ("MetricType", native.MetricType),
     ("AlertStatus", native.AlertStatus), ("HealthStatus", native.HealthStatus),
     ("SpanKind", native.SpanKind), ("SpanStatusCode", native.StatusCode)],
)
def test_type_literals_are_the_values_the_models_accept(alias, enum):
    assert get_args(getattr(FlextObservabilityTypes, alias)) == tuple(e.value for e in enum)


def test_services_satisfy_the_protocols(factory):
    protocols = FlextObservabilityProtocols
    assert isinstance(factory.metrics, protocols.MetricsService)
    assert isinstance(factory.tracing, protocols.TracingService)
    assert isinstance(factory.alerts, protocols.AlertService)
    assert isinstance(factory.health, protocols.HealthService)
    assert not isinstance(factory.metrics, protocols.TracingService)
    for entity in (flext_create_metric("x", 1).unwrap(), flext_create_trace("t").unwrap(),
                   flext_create_alert("A").unwrap(), flext_create_health_check().unwrap()):
        assert isinstance(entity, protocols.Sendable)
