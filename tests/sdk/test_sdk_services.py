"""The services: entities built through the factories, queued on the factory's client."""

from __future__ import annotations

import pytest

from flext_observability import (
    FlextAlert,
    FlextHealthCheck,
    FlextMetric,
    FlextTrace,
    flext_create_metric,
    flext_monitor_function,
)


@pytest.fixture
def factory(stub_collector, make_factory):
    return make_factory(stub_collector.url, instance="host-1")


def test_metrics(factory, stub_collector):
    metrics = factory.metrics
    assert isinstance(metrics.record_counter("orders", labels={"shop": "eu"}).unwrap(), FlextMetric)
    assert metrics.record_gauge("queue_depth", 12.5).is_success
    assert metrics.record_histogram("latency_seconds", 0.2, buckets=[0.1, 0.5, 1]).is_success
    assert metrics.record(flext_create_metric("x", 1, service="other").unwrap()).is_success
    assert factory.flush(5)
    sent = stub_collector.items("metrics")
    assert [(m["name"], m["type"]) for m in sent] == [
        ("orders", "counter"), ("queue_depth", "gauge"), ("latency_seconds", "histogram"),
        ("x", "gauge"),
    ]
    assert [(m["service"], m.get("instance")) for m in sent[:3]] == [("sdk-test", "host-1")] * 3
    assert sent[0]["labels"] == {"shop": "eu"}
    assert sent[2]["buckets"] == [0.1, 0.5, 1]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda m: m.record_counter("orders", -1), "value"),
        (lambda m: m.record_gauge("queue depth", 1), "name"),
        (lambda m: m.record_gauge("q", float("nan")), "value: must be a finite number"),
        (lambda m: m.record_histogram("h", 1, buckets=[3, 2]), "buckets"),
        (lambda m: m.record_counter("c", labels={"instance": "x"}), "labels.instance"),
    ],
)
def test_bad_metrics_fail_and_send_nothing(factory, stub_collector, call, field):
    result = call(factory.metrics)
    assert result.is_failure
    assert field in result.error
    assert factory.client.stats.enqueued == 0


def test_span_context_manager(factory, stub_collector):
    with factory.tracing.span("load", attributes={"rows": 3}) as span:
        span.set_attribute("table", "orders")
        span.add_event("cache-miss", {"key": "k"})
    assert isinstance(span.result.unwrap(), FlextTrace)
    assert factory.flush(5)
    (sent,) = stub_collector.items("spans")
    assert sent["name"] == "load"
    assert sent["attributes"] == {"rows": 3, "table": "orders"}
    assert sent["events"][0]["name"] == "cache-miss"


def test_span_context_manager_records_and_reraises(factory, stub_collector):
    with pytest.raises(KeyError), factory.tracing.span("lookup"):
        raise KeyError("missing")
    assert factory.flush(5)
    (sent,) = stub_collector.items("spans")
    assert sent["status"]["code"] == "error"
    assert sent["events"][0]["attributes"]["exception.type"] == "KeyError"


def test_spans_nest_with_decorated_functions(factory, stub_collector):
    @flext_monitor_function("step", factory=factory)
    def step() -> None:
        with factory.tracing.span("inside"):
            pass

    with factory.tracing.span("job") as job:
        step()
    assert factory.flush(5)
    spans = {s["name"]: s for s in stub_collector.items("spans")}
    assert spans["step"]["parent_span_id"] == job.span_id
    assert spans["inside"]["parent_span_id"] == spans["step"]["span_id"]
    assert {s["trace_id"] for s in spans.values()} == {job.trace_id}


def test_start_and_finish_span(factory, stub_collector):
    parent = factory.tracing.start_span("batch", kind="consumer").unwrap()
    child = factory.tracing.start_span("item", parent=parent).unwrap()
    assert factory.tracing.finish_span(child, error=ValueError("bad item")).is_success
    assert factory.tracing.finish_span(parent).is_success
    assert factory.flush(5)
    spans = {s["name"]: s for s in stub_collector.items("spans")}
    assert spans["item"]["parent_span_id"] == spans["batch"]["span_id"]
    assert spans["item"]["status"]["code"] == "error"
    assert spans["batch"]["kind"] == "consumer"


def test_start_span_with_bad_input_fails(factory):
    assert "kind:" in factory.tracing.start_span("x", kind="sideways").error
    assert "name:" in factory.tracing.start_span("").error


def test_invalid_span_in_context_manager_is_logged_not_raised(factory, caplog):
    with factory.tracing.span("x", attributes={"bad": {"nested": 1}}) as span:
        pass
    assert span.result.is_failure
    assert "attributes.bad" in caplog.text


def test_alerts_fire_and_resolve(factory, stub_collector):
    fired = factory.alerts.fire(
        "QueueBacklog", severity="critical", summary="backlog", labels={"queue": "q"}
    )
    assert isinstance(fired.unwrap(), FlextAlert)
    resolved = factory.alerts.resolve("QueueBacklog", severity="critical", labels={"queue": "q"})
    assert resolved.is_success
    assert factory.alerts.fire("Bad", severity="fatal").is_failure
    assert factory.flush(5)
    sent = stub_collector.items("alerts")
    assert [(a["name"], a["status"], a["severity"]) for a in sent] == [
        ("QueueBacklog", "firing", "critical"), ("QueueBacklog", "resolved", "critical")
    ]
    assert sent[0]["service"] == "sdk-test"


def test_health_report(factory, stub_collector):
    report = factory.health.report(
        checks={"db": "healthy", "disk": {"status": "degraded", "observed_value": 91.5}},
        ttl_seconds=30,
    )
    assert isinstance(report.unwrap(), FlextHealthCheck)
    assert factory.health.report("unwell").is_failure
    assert factory.flush(5)
    (sent,) = stub_collector.items("health")
    assert sent["status"] == "degraded"
    assert sent["checks"]["disk"]["observed_value"] == 91.5
    assert (sent["service"], sent["instance"], sent["ttl_seconds"]) == ("sdk-test", "host-1", 30)


def test_factory_is_a_context_manager(stub_collector, make_factory):
    with make_factory(stub_collector.url) as factory:
        factory.metrics.record_gauge("g", 1)
    assert len(stub_collector.items("metrics")) == 1
