"""Every example of the seed's API document runs as written against a real collector.

The examples are read from `seed_examples/SEED-API.md`, a verbatim copy of the project's
`SEED-API.md` kept in the repository (a clone alone runs it). Each runs as its own process, with
only the mapping that document allows: the `flext_core` names come from elsewhere (`FlextResult`
from `flext_observability`, `get_logger` is `logging.getLogger`, `FlextDomainService` a plain
base class; `FlextContainer`, `FlextUtilities` and `flext_cli` are out of scope), typing
names from `typing` (`object` is a builtin, not a `typing` name). Every example runs after
the document's own "Root imports" block (its mandatory foundation imports, mapped the same
way), which gives the names some examples use without importing them (`FlextMetricsService`
in "Distributed tracing", `FlextResult` in "Real integration"). Examples that only define
functions are followed by a driver that calls them, with the helpers they expect the caller
to define (`execute_business_logic`, `evaluate_alert_thresholds`). Then the test finds what
each recorded: samples on `/metrics`, alerts on `/api/v1/alerts`, health on
`/api/v1/health`, spans at a downstream OTLP receiver (the collector's jaeger exporter).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers.otlp_sink import OtlpSink, attributes
from helpers.procs import Daemon, http_get, poll

pytestmark = pytest.mark.integration

SEED = Path(__file__).parent / "seed_examples" / "SEED-API.md"
TIMEOUT = 30

# What the mapping provides in place of `from flext_core import ...`.
PREAMBLE = '''\
from typing import Dict, List, Optional
from logging import getLogger as get_logger
from flext_observability import FlextResult


class FlextDomainService:
    """flext_core's FlextDomainService: a plain base class here."""
'''
MAPPED = {"FlextResult", "get_logger", "FlextDomainService"}
OUT_OF_SCOPE = {"FlextContainer", "FlextUtilities"}


def seed_examples() -> dict[str, list[str]]:
    """The python blocks of the document, by the `## ` heading they are under."""
    sections: dict[str, list[str]] = {}
    heading = ""
    for part in re.split(r"^(## .*)$", SEED.read_text(), flags=re.MULTILINE):
        if part.startswith("## "):
            heading = part[3:].strip()
        else:
            blocks = re.findall(r"^```python\n(.*?)^```", part, flags=re.MULTILINE | re.DOTALL)
            if blocks:
                sections[heading] = blocks
    return sections


def mapped(code: str) -> str:
    """The example after the mapping preamble and the document's "Root imports" block, with
    the documented mapping applied to both and nothing else changed."""
    return PREAMBLE + "\n" + _mapped(EXAMPLES["Root imports"][0]) + "\n" + _mapped(code)


def _mapped(code: str) -> str:
    lines = []
    for line in code.splitlines():
        found = re.match(r"(\s*)from (flext_core|flext_cli|typing) import (.*)$", line)
        if found is None:
            lines.append(line)
            continue
        indent, module, names = found[1], found[2], [n.strip() for n in found[3].split(",")]
        if module == "flext_core":
            assert set(names) <= MAPPED | OUT_OF_SCOPE, f"unmapped flext_core name in {line!r}"
        elif module == "typing":
            kept = ", ".join(n for n in names if n != "object")
            lines.append(f"{indent}from typing import {kept}")
    return "\n".join(lines) + "\n"


EXAMPLES = seed_examples()


# -- what the collector and the sink hold ------------------------------------------------


def samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = http_get(f"{url}/metrics").text
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def sample(url: str, name: str, job: str, **labels: str) -> float | None:
    """A sample of `name` (or `name_<unit>`) with `job` and `labels`, None when absent."""
    for found, found_labels, value in samples(url):
        if (found == name or found.startswith(f"{name}_")) and found_labels.get("job") == job \
                and all(found_labels.get(k) == v for k, v in labels.items()):
            return value
    return None


def wait_sample(url: str, name: str, value: float, job: str, **labels: str) -> None:
    poll(lambda: sample(url, name, job, **labels), lambda v: v == value, TIMEOUT, 0.1,
         f"{name}{{job={job}, {labels}}} == {value}")


def alerts(url: str, service: str) -> list[dict[str, Any]]:
    return [a for a in http_get(f"{url}/api/v1/alerts").json()["alerts"]
            if a["labels"].get("service") == service]


def health(url: str, service: str) -> dict[str, Any] | None:
    found = [s for s in http_get(f"{url}/api/v1/health").json()["services"]
             if s["service"] == service]
    return found[0] if found else None


def spans(sink: OtlpSink, service: str, name: str | None = None) -> list[dict[str, Any]]:
    """The spans of `service` at the sink (those called `name` only, if given)."""
    with sink._lock:
        requests = list(sink.requests)
    return [
        {"name": span.name, "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
         "parent_span_id": span.parent_span_id.hex(),
         "attributes": attributes(span.attributes),
         "status": (span.status.code, span.status.message)}
        for request in requests
        for resource_spans in request.resource_spans
        if attributes(resource_spans.resource.attributes).get("service.name") == service
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
        if name is None or span.name == name
    ]


def wait_spans(sink: OtlpSink, service: str, names: list[str]) -> list[dict[str, Any]]:
    """Wait until the spans called `names` (a name twice for two spans) arrived."""
    def arrived(found: list[dict[str, Any]]) -> bool:
        return all(sum(s["name"] == n for s in found) >= names.count(n) for n in names)

    return poll(lambda: spans(sink, service), arrived, TIMEOUT, 0.1,
                f"spans {names} of {service} at the sink")


STATUS_OK, STATUS_ERROR = 1, 2  # OTLP Status.StatusCode


# -- fixtures: one collector and one sink for every example ------------------------------


@pytest.fixture(scope="module")
def sink() -> Iterator[OtlpSink]:
    started = OtlpSink().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def collector(tmp_path_factory, sink) -> Iterator[Daemon]:
    daemon = Daemon(tmp_path_factory.mktemp("seed-collector"),
                    {"exporters": {"jaeger": {"endpoint": sink.grpc_endpoint}}})
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture
def run(collector, tmp_path):
    """`run(code, service, as_c=False) -> the driver's JSON output (or None)`."""

    def run_example(code: str, service: str, as_c: bool = False) -> Any:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FLEXT_OBS_", "OTEL_"))}
        env.update(FLEXT_OBS_ENDPOINT=collector.url, FLEXT_OBS_SERVICE_NAME=service,
                   FLEXT_OBS_FLUSH_INTERVAL="0.1", FLEXT_OBS_EXIT_FLUSH_DEADLINE="10",
                   PYTHONUNBUFFERED="1")
        if as_c:
            command = [sys.executable, "-c", code]
        else:
            script = tmp_path / f"{service}.py"
            script.write_text(code)
            command = [sys.executable, str(script)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60,
                              cwd=tmp_path)
        assert done.returncode == 0, f"{service}:\n{code}\n--- stderr:\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        output = done.stdout.strip().splitlines()
        return json.loads(output[-1]) if output else None

    return run_example


def example(heading: str, index: int = 0) -> str:
    return EXAMPLES[heading][index]


def test_the_copy_holds_every_example():
    assert {heading: len(blocks) for heading, blocks in EXAMPLES.items()} == {
        "Public API (module exports)": 1, "Railway pattern": 1,
        "Domain library pattern: nested services": 1, "Factory function API": 1,
        "Monitoring decorator": 1, "Root imports": 1, "Complete type annotations": 1,
        "Metrics collection with FlextResult": 1, "Distributed tracing": 1,
        "Alerting and health monitoring": 1, "Railway pipeline": 1, "Real integration": 1,
        "Quick validation snippets (each run as `python -c`)": 3,
    }


# -- the examples that only build or import: they run, and send nothing -----------------


NOTHING_SENT = {
    "Public API (module exports)": "",
    "Root imports": "",
    "Railway pattern": '''
assert result.is_success, result.error
assert (metric.name, metric.value, metric.unit) == ("cpu_usage", 85.2, "percent")
''',
    "Domain library pattern: nested services": '''
from flext_observability import FlextMetricsService, get_global_factory
assert isinstance(metrics_service, FlextMetricsService)
''',
    "Factory function API": '''
assert metric.unwrap().unit == "count" and metric.unwrap().value == 42
assert trace.unwrap().operation == "auth-service"
assert (alert.unwrap().severity, alert.unwrap().summary) == ("warning", "CPU usage > 80%")
''',
    "Complete type annotations": '''
import asyncio
assert asyncio.run(collect_system_metrics(["cpu"])) is None
''',
}


@pytest.mark.parametrize("heading", sorted(NOTHING_SENT))
def test_examples_that_send_nothing(run, collector, heading):
    service = "seed-" + re.sub(r"[^a-z]+", "-", heading.lower()).strip("-")
    run(mapped(example(heading)) + NOTHING_SENT[heading], service)
    assert not [s for s in samples(collector.url) if s[1].get("job") == service]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_quick_validation_snippets_run_as_python_c(run, index):
    run(example("Quick validation snippets (each run as `python -c`)", index),
        f"seed-quick-{index}", as_c=True)


# -- the examples that record -----------------------------------------------------------


def test_monitoring_decorator(run, collector, sink):
    service = "seed-decorator"
    run(mapped(example("Monitoring decorator")) + '''
assert process_data({"rows": 3}) == {"processed": True}
''', service)
    wait_sample(collector.url, "flext_function_calls_total", 1, service,
                function="business_operation", outcome="success")
    assert sample(collector.url, "flext_function_duration_seconds_count", service,
                  function="business_operation", outcome="success") == 1
    wait_spans(sink, service, ["business_operation"])


def test_metrics_collection(run, collector):
    service = "seed-metrics"
    out = run(mapped(example("Metrics collection with FlextResult")) + '''
import json
result = asyncio.run(enterprise_metrics_collection("seed-metrics", {
    "cpu_usage": {"value": 85.2, "unit": "percent"}, "api_requests": {"value": 42},
}))
assert result.is_success, result.error
print(json.dumps([(m.name, m.value, m.unit) for m in result.unwrap()]))
failed = asyncio.run(enterprise_metrics_collection("seed-metrics", {"bad name": {"value": 1}}))
assert failed.is_failure and "name:" in failed.error, failed.error
''', service)
    assert out == [["cpu_usage", 85.2, "percent"], ["api_requests", 42, "count"]]
    wait_sample(collector.url, "cpu_usage", 85.2, service)
    wait_sample(collector.url, "api_requests", 42, service)


def test_distributed_tracing(run, collector, sink):
    service = "seed-tracing"
    out = run(mapped(example("Distributed tracing")) + '''
import json


class FailingService(EnterpriseObservabilityService):
    async def _process_business_logic(self, data):
        raise RuntimeError("payment gateway down")


ok = asyncio.run(EnterpriseObservabilityService("checkout").process_monitored_operation(
    {"operation": "pay", "order": 17}))
assert ok.is_success, ok.error
failed = asyncio.run(FailingService("refunds").process_monitored_operation({"operation": "x"}))
assert failed.is_failure and "payment gateway down" in failed.error, failed.error
print(json.dumps(ok.unwrap()))
''', service)
    assert (out["operation"], out["success"]) == ("pay", True)
    assert out["result"] == {"processed": True, "data": {"operation": "pay", "order": 17}}

    wait_sample(collector.url, "checkout_operations", 1, service)
    wait_sample(collector.url, "flext_function_calls_total", 2, service,
                function="service_processing", outcome="success")
    found = wait_spans(sink, service, ["service_processing", "process_operation"] * 2)
    (ok_span,) = [s for s in found if s["name"] == "process_operation"
                  and s["status"][0] == STATUS_OK]
    assert ok_span["trace_id"] == out["trace_id"]
    assert ok_span["attributes"] == {
        "flext.operation": "checkout.process_operation", "operation": "pay", "order": 17}
    (parent,) = [s for s in found if s["span_id"] == ok_span["parent_span_id"]]
    assert parent["name"] == "service_processing"  # the decorator's span
    (error_span,) = [s for s in found if s["name"] == "process_operation"
                     and s["status"][0] == STATUS_ERROR]
    assert error_span["status"][1] == "payment gateway down"
    assert error_span["attributes"]["flext.operation"] == "refunds.process_operation"


def test_alerting_and_health_monitoring(run, collector):
    service = "seed-alerting"
    out = run(mapped(example("Alerting and health monitoring")) + '''
import json


async def main():
    service = (await create_enterprise_alerting_service()).unwrap()
    created = await service.create_system_alert(
        {"name": "high_cpu", "message": "CPU usage > 80%", "source": "node-1"})
    alert = created.unwrap()
    checks = (await service.monitor_system_health(["database", "cache"])).unwrap()
    escalation = (await service.process_alert_escalation(
        alert, {"level": 2, "severity": "critical"})).unwrap()
    refused = await service.create_system_alert({"name": "x", "severity": "fatal",
                                                 "message": "m"})
    assert refused.is_failure and "severity" in refused.error, refused.error
    return {"alert_id": alert.alert_id, "checks": [c.name for c in checks],
            "escalation": escalation}


print(json.dumps(asyncio.run(main())))
''', service)
    assert out["checks"] == ["database", "cache"]
    assert out["escalation"]["alert_id"] == out["alert_id"]
    assert out["escalation"]["escalation_level"] == 2

    report = poll(lambda: health(collector.url, service),
                  lambda h: h is not None and set(h["checks"]) == {"database", "cache"},
                  TIMEOUT, 0.1, "both checks in /api/v1/health")
    assert report["status"] == "healthy"
    assert report["checks"]["database"]["status"] == "healthy"
    assert report["checks"]["database"]["message"] == "checked_at=now, component=database"

    firing = poll(lambda: alerts(collector.url, service),
                  lambda found: any(a["labels"].get("escalation_level") == "2" for a in found),
                  TIMEOUT, 0.1, "the escalated alert in /api/v1/alerts")
    (alert,) = firing  # the warning it escalates was resolved
    assert alert["labels"] == {"alertname": "high_cpu", "severity": "critical",
                               "service": service, "source": "node-1",
                               "escalation_level": "2"}
    assert alert["annotations"]["summary"] == "CPU usage > 80%"


def test_railway_pipeline(run, collector, sink):
    service = "seed-pipeline"
    out = run(mapped(example("Railway pipeline")) + '''
import asyncio
import json
from flext_observability import FlextAlertService, flext_create_alert


async def evaluate_alert_thresholds(metrics, thresholds):
    alert_service = FlextAlertService()
    fired = []
    for metric in metrics:
        limit = thresholds.get(metric.name)
        if limit is not None and metric.value > limit:
            alert = flext_create_alert(f"{metric.name}_high", "warning",
                                       f"{metric.name} = {metric.value} > {limit}").unwrap()
            (await alert_service.process_alert(alert)).unwrap()
            fired.append(alert.name)
    return FlextResult[List[str]].ok(fired)


result = asyncio.run(collect_monitor_alert(
    "seed-pipeline",
    {"queue_depth": {"value": 120, "unit": "count"}, "cpu_usage": {"value": 40.0}},
    {"queue_depth": 100.0, "cpu_usage": 80.0},
))
assert result.is_success, result.error
value = result.unwrap()
print(json.dumps({"alerts": value["alerts_triggered"], "trace": value["trace_id"].trace_id,
                  "metrics": [m.name for m in value["collected_metrics"]]}))
failed = asyncio.run(collect_monitor_alert("seed-pipeline", {"q": {"value": float("nan")}}, {}))
assert failed.is_failure and "metrics_config.q.value" in failed.error, failed.error
''', service)
    assert out["alerts"] == ["queue_depth_high"]
    assert out["metrics"] == ["queue_depth", "cpu_usage"]
    wait_sample(collector.url, "queue_depth", 120, service)
    wait_sample(collector.url, "cpu_usage", 40, service)
    (alert,) = poll(lambda: alerts(collector.url, service), lambda a: len(a) == 1, TIMEOUT,
                    0.1, "queue_depth_high firing")
    assert alert["labels"]["alertname"] == "queue_depth_high"
    assert alert["annotations"]["summary"] == "queue_depth = 120.0 > 100.0"
    # The trace it starts is never completed: sent at exit, marked unfinished.
    (span,) = wait_spans(sink, service, ["seed-pipeline_monitoring"])
    assert span["trace_id"] == out["trace"]
    assert span["attributes"] == {"flext.span.unfinished": True}


def test_real_integration(run, collector, sink):
    service = "seed-integration"
    run(mapped(example("Real integration")) + '''
import asyncio


async def execute_business_logic(operation_data):
    return {"handled": operation_data}


result = asyncio.run(monitored_business_operation({"order": 7}))
assert result.unwrap() == {"handled": {"order": 7}}
''', service)
    wait_sample(collector.url, "operation_start", 1, service)
    wait_sample(collector.url, "operation_success", 1, service)
    wait_sample(collector.url, "flext_function_calls_total", 1, service,
                function="critical_business_operation", outcome="success")
    wait_spans(sink, service, ["critical_business_operation"])
