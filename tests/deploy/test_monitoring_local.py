"""The dashboards and rules show data on a real stack (issue 6, CONTRACT §5, §8).

``scripts/monitoring-local.sh`` runs Debian's Prometheus and Alertmanager with the shipped
configs (loopback variant) plus the collector, on free ports, scraping and evaluating every
second and with every alert's ``for:`` shortened to 5s (the script's ``SCRAPE_INTERVAL``,
``EVAL_INTERVAL`` and ``RULES_FOR_OVERRIDE``). A short load runs against the collector:

- ``@flext_monitor_function`` calls through the SDK (a quarter of them raise), with health
  reports: ``demo`` unhealthy, ``billing`` healthy, ``search`` degraded, ``mail`` reported
  once with a 1s ttl (stale), and one native alert;
- OTLP/HTTP spans and metrics from the OpenTelemetry SDK (one instrument with exponential
  histogram aggregation, which the Prometheus exporter converts to explicit buckets), and
  now and then an OTLP gauge point older than the one before it (dropped as out of order,
  and counted);
- an invalid native request now and then (refusals);
- the local stack has no Jaeger: an OTLP sink plays it (``exporters.jaeger`` set through
  the collector's environment), refusing the first exports (failures, retries, exporter
  down) and then accepting them.

Then every PromQL expression of every dashboard panel (Grafana variables replaced by what
Grafana sends for "All") and of every rule, recording and alerting, is evaluated against
that Prometheus, and each must return a non-empty result: a panel that shows nothing is a
bug. Alert rules that cannot fire in this run are evaluated without their threshold
(``ALERT_RULES`` says why, per rule); the others must fire in Prometheus, and the health
alerts (the collector's ServiceUnhealthy and the rule FlextServiceUnhealthy, inhibited by
it) must reach Alertmanager's ``GET /api/v2/alerts``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_deploy_files import (
    DASHBOARDS,
    LOCAL_SCRIPT,
    REPO,
    load_yaml,
    metric_names,
    recorded_names,
    rules,
    tool,
    walk_panels,
)

from helpers.otlp_sink import OtlpSink
from helpers.procs import ManagedProcess, free_port, http_get, wait_http

pytestmark = pytest.mark.timeout(150)
# The tests that use the `stack` fixture are marked `integration`; the rest are static.

# What Grafana substitutes for its built-in variables with a Prometheus datasource whose
# scrape interval is the default 15s: $__rate_interval is max(4 * 15s, $__interval + 15s).
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
}

# Every alert rule, and how this test evaluates it:
#   "fires": the whole expression must return data and the alert must fire in Prometheus,
#            because the load below makes the condition true;
#   "lhs":   the condition must not (or need not) hold in a healthy run, so the expression
#            is evaluated without its comparison; the reason says why it cannot fire here.
ALERT_RULES: dict[str, tuple[str, str]] = {
    "FlextCollectorDown": ("lhs", "the collector is up for the whole run: up is 1, not 0"),
    "FlextCollectorRefusingItems": ("fires", "the load posts invalid requests"),
    "FlextCollectorQueueFilling": (
        "lhs",
        "the queue holds a handful of items out of queue.max_items (1e6), far below 80%",
    ),
    "FlextCollectorExportFailing": ("fires", "the Jaeger sink refuses the first exports"),
    "FlextCollectorExporterDown": (
        "lhs",
        "the Jaeger sink recovers before the checks, so every exporter_up is 1 again",
    ),
    "FlextCollectorDroppingItems": (
        "fires",
        "the Prometheus exporter drops the out-of-order OTLP gauge points of the load",
    ),
    "FlextServiceUnhealthy": ("fires", "demo reports unhealthy"),
    "FlextServiceDegraded": ("fires", "search reports degraded"),
    "FlextServiceHealthStale": ("fires", "mail reported once with a 1s ttl"),
    "FlextFunctionErrorRatioHigh": ("fires", "a quarter of the calls to demo.work raise"),
    "FlextFunctionLatencyHigh": (
        "lhs",
        "the decorated function returns in microseconds: p95 is far below 1s",
    ),
}

# How long the expressions may take to show data, counted from the stack's start: the
# first scrape comes ~5s after Prometheus starts, rate() needs two samples, the recording
# rules one more evaluation, and the alerts their 5s `for`.
DATA_DEADLINE = 60.0
FOR_OVERRIDE = "5s"

_THRESHOLD = re.compile(
    r"^(?P<lhs>.+?)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<value>[-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*$",
    re.DOTALL,
)


# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Query:
    id: str
    expr: str  # PromQL, ready for Prometheus


def grafana_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """What Grafana puts in place of each variable with "All" selected."""
    values = dict(GRAFANA_BUILTINS)
    for variable in dashboard["templating"]["list"]:
        assert variable.get("includeAll"), f"${variable['name']}: no 'All' option"
        values[variable["name"]] = variable.get("allValue") or ".*"
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    """``$var``, ``${var}``, ``${var:fmt}`` and ``[[var]]`` replaced; unknown ones raise."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"undefined Grafana variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", value, expr)


def panel_queries(dashboards: tuple[Path, ...] = tuple(DASHBOARDS), **selected: str) -> list[Query]:
    """Every panel target, with "All" for the variables not in ``selected``."""
    queries = []
    for path in dashboards:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        values = {**grafana_values(dashboard), **selected}
        queries.extend(
            Query(
                f"{path.stem}:{panel['title']}:{target.get('refId', '?')}",
                substitute(target["expr"], values),
            )
            for panel in walk_panels(dashboard["panels"])
            for target in panel.get("targets", [])
        )
    return queries


def variable_queries() -> list[tuple[str, str, str]]:
    """(id, selector, label) of every ``label_values(selector, label)`` variable."""
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for variable in dashboard["templating"]["list"]:
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", text)
            assert match, f"{path.name}: ${variable['name']}: not label_values(...): {text!r}"
            found.append((f"{path.stem}:${variable['name']}", match.group(1), match.group(2)))
    return found


def without_threshold(expr: str) -> str:
    match = _THRESHOLD.match(expr.strip())
    assert match, f"no trailing comparison with a number in {expr!r}"
    return match.group("lhs")


def rule_queries() -> list[Query]:
    queries = []
    for file, rule in rules():
        if "record" in rule:
            queries.append(Query(f"{file}:record:{rule['record']}", rule["expr"]))
            # ...and what Prometheus recorded with it.
            queries.append(Query(f"{file}:recorded:{rule['record']}", rule["record"]))
            continue
        mode, _reason = ALERT_RULES[rule["alert"]]
        expr = rule["expr"] if mode == "fires" else without_threshold(rule["expr"])
        queries.append(Query(f"{file}:alert:{rule['alert']}:{mode}", expr))
    return queries


def test_every_alert_rule_has_an_evaluation_mode():
    # Static: a new alert rule must say whether this run makes it fire, and if not why.
    alerts = {rule["alert"] for _, rule in rules() if "alert" in rule}
    assert set(ALERT_RULES) == alerts
    for name, (mode, reason) in ALERT_RULES.items():
        assert mode in {"fires", "lhs"}, name
        assert reason, name
    for _, rule in rules():
        if "alert" in rule and ALERT_RULES[rule["alert"]][0] == "lhs":
            without_threshold(rule["expr"])  # the comparison is where the test expects it


@pytest.mark.parametrize(
    ("expr", "values", "expected"),
    [
        ('up{instance=~"$instance"}', {"instance": ".*"}, 'up{instance=~".*"}'),
        ("rate(x[$__rate_interval])", GRAFANA_BUILTINS, "rate(x[1m])"),
        ('x{a=~"${job}", b=~"[[job]]"}', {"job": ".*"}, 'x{a=~".*", b=~".*"}'),
    ],
)
def test_grafana_substitution(expr: str, values: dict[str, str], expected: str):
    assert substitute(expr, values) == expected


@pytest.mark.parametrize(
    ("expr", "lhs"),
    [
        ('up{job="x"} == 0', 'up{job="x"}'),
        ("sum by (a) (rate(x[5m])) / max(y) > 0.8", "sum by (a) (rate(x[5m])) / max(y)"),
        (
            "histogram_quantile(0.95,\n sum by (le) (rate(b[5m]))) > 1",
            "histogram_quantile(0.95,\n sum by (le) (rate(b[5m])))",
        ),
    ],
)
def test_threshold_split(expr: str, lhs: str):
    assert without_threshold(expr) == lhs


def test_script_renders_the_test_overrides(tmp_path: Path):
    env = {
        **os.environ,
        "SCRAPE_INTERVAL": "1s",
        "EVAL_INTERVAL": "2s",
        "RULES_FOR_OVERRIDE": FOR_OVERRIDE,
    }
    result = subprocess.run(
        [str(LOCAL_SCRIPT), "--render", str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    config = load_yaml(tmp_path / "prometheus.yml")
    assert config["global"]["scrape_interval"] == "1s"
    assert config["global"]["evaluation_interval"] == "2s"
    assert {job.get("scrape_interval", "1s") for job in config["scrape_configs"]} == {"1s"}
    assert not (tmp_path / "rules").is_symlink()
    for shipped in sorted((REPO / "prometheus" / "rules").glob("*.yml")):
        rendered = load_yaml(tmp_path / "rules" / shipped.name)
        original = load_yaml(shipped)
        for group, shipped_group in zip(rendered["groups"], original["groups"], strict=True):
            for rule, shipped_rule in zip(group["rules"], shipped_group["rules"], strict=True):
                # Only `for` differs, and only on alerts.
                assert {k: v for k, v in rule.items() if k != "for"} == {
                    k: v for k, v in shipped_rule.items() if k != "for"
                }
                assert rule.get("for") == (FOR_OVERRIDE if "alert" in rule else None)
    # Without the variables, the shipped intervals and rules (a link) again.
    overrides = {"SCRAPE_INTERVAL", "EVAL_INTERVAL", "RULES_FOR_OVERRIDE"}
    plain = {k: v for k, v in os.environ.items() if k not in overrides}
    subprocess.run([str(LOCAL_SCRIPT), "--render", str(tmp_path)], env=plain, check=True)
    assert (tmp_path / "rules").is_symlink()
    assert load_yaml(tmp_path / "prometheus.yml")["global"]["scrape_interval"] == "15s"
    # Anything but a duration is refused before it reaches sed or YAML.
    bad = subprocess.run(
        [str(LOCAL_SCRIPT), "--render", str(tmp_path)],
        env={**os.environ, "RULES_FOR_OVERRIDE": "5s/g"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "RULES_FOR_OVERRIDE" in bad.stderr


# --------------------------------------------------------------------------- the stack


class Load(threading.Thread):
    """Drives the collector until stopped: SDK calls and health, OTLP spans and metrics,
    invalid requests. Errors are kept in ``errors`` (the checks report them)."""

    def __init__(self, collector: str) -> None:
        super().__init__(name="monitoring-local-load", daemon=True)
        self.collector = collector
        self.halt = threading.Event()
        self.errors: list[BaseException] = []
        self.calls = 0

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.errors.append(exc)

    def _run(self) -> None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from flext_observability import (
            FlextObservabilityConfig,
            FlextObservabilityMasterFactory,
            flext_monitor_function,
        )

        def factory(service: str) -> FlextObservabilityMasterFactory:
            return FlextObservabilityMasterFactory(
                FlextObservabilityConfig(
                    endpoint=self.collector,
                    service_name=service,
                    instance=f"{service}-1",
                    flush_interval=0.2,
                )
            )

        demo, billing, search, mail = (factory(s) for s in ("demo", "billing", "search", "mail"))
        resource = Resource.create({"service.name": "demo-otel"})
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"{self.collector}/v1/traces", timeout=5),
                schedule_delay_millis=500,
            )
        )
        meter_provider = MeterProvider(
            resource=resource,
            metric_readers=[
                PeriodicExportingMetricReader(
                    OTLPMetricExporter(endpoint=f"{self.collector}/v1/metrics", timeout=5),
                    export_interval_millis=1000,
                )
            ],
            views=[
                View(
                    instrument_name="demo.payload.size",
                    aggregation=ExponentialBucketHistogramAggregation(),
                )
            ],
        )
        tracer = tracer_provider.get_tracer("monitoring-local-test")
        meter = meter_provider.get_meter("monitoring-local-test")
        requests = meter.create_counter("demo.requests", unit="1")
        payload_size = meter.create_histogram("demo.payload.size", unit="By")

        @flext_monitor_function("demo.work", factory=demo)
        def work(i: int) -> int:
            if i % 4 == 0:
                raise ValueError(f"order {i} refused")
            return i

        mail.health.report("healthy", ttl_seconds=1)  # and never again: stale after 1s
        demo.alerts.fire("DemoBacklog", severity="warning", summary="demo: backlog growing")
        with httpx.Client(trust_env=False, timeout=5) as http:
            tick = 0
            try:
                while not self.halt.is_set():
                    with contextlib.suppress(ValueError):
                        work(tick)
                    self.calls += 1
                    if tick % 10 == 0:  # about once a second
                        demo.health.report(
                            checks={"db": {"status": "unhealthy", "message": "connection refused"}}
                        )
                        billing.health.report("healthy")
                        search.health.report(checks={"index": "degraded", "disk": "healthy"})
                        with (
                            tracer.start_as_current_span("handle"),
                            tracer.start_as_current_span("query"),
                        ):
                            pass
                        requests.add(1, {"route": "/orders"})
                        payload_size.record(512 + tick)
                        answer = http.post(f"{self.collector}/api/v1/metrics", json={"bad": 1})
                        assert answer.status_code == 422, answer.text
                        now = time.time_ns()
                        for stamp in (now, now - 10**9):  # the second is out of order
                            answer = http.post(f"{self.collector}/v1/metrics",
                                               json=late_gauge(stamp))
                            assert answer.status_code == 200, answer.text
                    tick += 1
                    self.halt.wait(0.1)
            finally:
                tracer_provider.shutdown()
                meter_provider.shutdown()
                for f in (demo, billing, search, mail):
                    f.close(2)


def late_gauge(time_ns: int) -> dict[str, Any]:
    """An OTLP/JSON request with one point of the gauge `demo.late` at `time_ns`."""
    point = {"timeUnixNano": str(time_ns), "asDouble": 1.0}
    return {"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": "demo-otel"}}]},
        "scopeMetrics": [{"metrics": [{"name": "demo.late", "gauge": {"dataPoints": [point]}}]}],
    }]}


@dataclass
class Stack:
    process: ManagedProcess
    prometheus: str
    alertmanager: str
    collector: str
    started: float
    load: Load
    sink: OtlpSink

    @property
    def deadline(self) -> float:
        return self.started + DATA_DEADLINE

    def api(self, path: str, **params: Any) -> Any:
        body = http_get(f"{self.prometheus}/api/v1/{path}", **params).json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":  # e.g. time(): one value, never empty
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def check_alive(self) -> None:
        assert self.process.running, f"monitoring-local exited:\n{self.process.log_tail()}"
        assert not self.load.errors, f"the load failed: {self.load.errors!r}"

    def wait(self, fetch: Callable[[], Any], minimum: float = 3.0) -> Any:
        """``fetch()`` until truthy, up to the stack's data deadline (at least ``minimum``
        seconds from now); the last result either way."""
        until = max(self.deadline, time.monotonic() + minimum)
        while True:
            self.check_alive()
            result = fetch()
            if result:
                return result
            if time.monotonic() >= until:
                return result
            time.sleep(0.25)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tool("prometheus")
    tool("prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("monitoring-local")
    # The collector from this checkout, like the other integration tests.
    wrapper = tmp / "flext-observability"
    wrapper.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m flext_observability "$@"\n'
    )
    wrapper.chmod(0o755)
    pythonpath = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)
    sink = OtlpSink(keep=False).start()
    sink.fail()
    ports = {name: str(free_port()) for name in ("PROM", "AM", "HTTP", "GRPC")}
    env = {
        "PROM_PORT": ports["PROM"],
        "AM_PORT": ports["AM"],
        "COLLECTOR_HTTP_PORT": ports["HTTP"],
        "COLLECTOR_GRPC_PORT": ports["GRPC"],
        "DATA_DIR": str(tmp / "data"),
        "FLEXT_OBS_BIN": str(wrapper),
        "PYTHONPATH": pythonpath,
        "SCRAPE_INTERVAL": "1s",
        "EVAL_INTERVAL": "1s",
        "RULES_FOR_OVERRIDE": FOR_OVERRIDE,
        # No Jaeger in the local stack: the sink plays it.
        "FLEXT_OBS_EXPORTERS__JAEGER__ENDPOINT": sink.http_endpoint,
        "FLEXT_OBS_EXPORTERS__JAEGER__PROTOCOL": "http/protobuf",
    }
    started = time.monotonic()
    process = ManagedProcess(
        [str(LOCAL_SCRIPT)],
        tmp,
        "monitoring-local",
        env=env,
        ready_url=f"http://127.0.0.1:{ports['PROM']}/-/ready",
        ready_timeout=30,
    )
    process.start()
    collector = f"http://127.0.0.1:{ports['HTTP']}"
    load = Load(collector)
    stack = Stack(
        process,
        f"http://127.0.0.1:{ports['PROM']}",
        f"http://127.0.0.1:{ports['AM']}",
        collector,
        started,
        load,
        sink,
    )
    try:
        wait_http(f"{stack.alertmanager}/-/ready", 20, process=process)
        wait_http(f"{collector}/healthz", 20, process=process)
        # The load starts once Prometheus scrapes the collector, so that it sees the
        # counters move (a counter first seen at its final value has a rate of 0).
        scraped = 'up{job="flext-observability"} == 1'
        assert stack.wait(lambda: stack.query(scraped)), (
            f"Prometheus does not scrape the collector:\n{process.log_tail()}"
        )
        load.start()
        # Exports to the sink fail (1s, 1.5s, ... backoff) until Prometheus has seen the
        # failures counter grow; then the sink accepts, and the exporter comes back up.
        failing = 'rate(flext_collector_export_failures_total{exporter="jaeger"}[1m]) > 0'
        assert stack.wait(lambda: stack.query(failing), 20), (
            f"no jaeger export failures in Prometheus:\n{process.log_tail()}"
        )
        sink.recover()
        yield stack
    finally:
        load.halt.set()
        if load.is_alive():
            load.join(15)
        process.stop()
        sink.stop()
    print(
        f"\nmonitoring-local: {time.monotonic() - started:.1f}s from start to stop, "
        f"{load.calls} calls, {sink.span_count} spans at the sink"
    )


# --------------------------------------------------------------------------- the checks


def _describe_empty(stack: Stack, query: Query) -> str:
    names = sorted(metric_names(query.expr) - recorded_names() - {"up"})
    present = {name: bool(stack.query(f"count({name})")) for name in names}
    return (
        f"{query.id}: no data for {query.expr!r}; metrics present in Prometheus: {present}; "
        f"targets: {[(t['scrapeUrl'], t['health']) for t in stack.api('targets')['activeTargets']]}"
    )


def check_panel(stack: Stack, query: Query) -> None:
    result = stack.wait(lambda: stack.query(query.expr))
    assert result, _describe_empty(stack, query)
    # A stat panel ending in `or vector(0)` always shows a number: the left side must have
    # data of its own, or the panel would show a reassuring 0 over a misspelled metric.
    if query.expr.rstrip().endswith("or vector(0)"):
        left = Query(query.id, query.expr.rstrip().removesuffix("or vector(0)").strip())
        assert stack.wait(lambda: stack.query(left.expr)), _describe_empty(stack, left)


@pytest.mark.integration
@pytest.mark.parametrize("query", panel_queries(), ids=lambda q: q.id)
def test_panel_returns_data(stack: Stack, query: Query):
    check_panel(stack, query)


OVERVIEW = (REPO / "grafana" / "dashboards" / "collector-overview.json",)


@pytest.mark.integration
@pytest.mark.parametrize("title", sorted({q.id for q in panel_queries(OVERVIEW, instance="")}))
def test_overview_panel_returns_data_for_the_selected_collector(stack: Stack, title: str):
    # The $instance drop-down offers the collector's scrape address: with it selected
    # (not "All"), every panel of the overview still shows that collector.
    (instance,) = {r["metric"]["instance"] for r in stack.query('up{job="flext-observability"}')}
    (query,) = [q for q in panel_queries(OVERVIEW, instance=instance) if q.id == title]
    check_panel(stack, query)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("name", "selector", "label"), variable_queries(), ids=[v[0] for v in variable_queries()]
)
def test_dashboard_variable_has_values(stack: Stack, name: str, selector: str, label: str):
    result = stack.wait(lambda: [r for r in stack.query(selector) if r["metric"].get(label)])
    assert result, f"{name}: label_values({selector}, {label}) offers nothing"


@pytest.mark.integration
@pytest.mark.parametrize("query", rule_queries(), ids=lambda q: q.id)
def test_rule_expression_returns_data(stack: Stack, query: Query):
    result = stack.wait(lambda: stack.query(query.expr))
    assert result, _describe_empty(stack, query)


@pytest.mark.integration
def test_alerts_that_the_load_triggers_fire_in_prometheus(stack: Stack):
    expected = {name for name, (mode, _) in ALERT_RULES.items() if mode == "fires"}

    def firing() -> set[str]:
        alerts = stack.api("alerts")["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

    stack.wait(lambda: expected <= firing())
    assert expected - firing() == set()
    assert not firing() & {name for name, (mode, _) in ALERT_RULES.items() if mode == "lhs"}


@pytest.mark.integration
def test_health_alerts_reach_alertmanager(stack: Stack):
    def alerts() -> dict[str, dict[str, Any]]:
        answer = http_get(f"{stack.alertmanager}/api/v2/alerts")
        answer.raise_for_status()
        return {
            a["labels"]["alertname"]: a
            for a in answer.json()
            if a["labels"].get("service") == "demo"
        }

    wanted = {"ServiceUnhealthy", "FlextServiceUnhealthy"}
    stack.wait(lambda: wanted <= set(alerts()))
    found = alerts()
    assert wanted <= set(found), f"Alertmanager has {found}"
    # From the collector (CONTRACT §6): straight from the health report.
    collector_alert = found["ServiceUnhealthy"]
    assert collector_alert["labels"]["severity"] == "critical"
    assert "connection refused" in collector_alert["annotations"]["description"]
    # From Prometheus, evaluating prometheus/rules/services.yml...
    rule_alert = found["FlextServiceUnhealthy"]
    assert rule_alert["labels"]["severity"] == "critical"
    assert rule_alert["labels"]["instance"] == "demo-1"
    assert rule_alert["annotations"]["summary"] == "Service demo is unhealthy"
    # ...and muted by the collector's twin (config/alertmanager.yml's inhibit_rules).
    assert rule_alert["status"]["state"] == "suppressed"
    assert rule_alert["status"]["inhibitedBy"] == [collector_alert["fingerprint"]]
    assert collector_alert["status"]["state"] == "active"


@pytest.mark.integration
def test_every_queried_metric_is_in_a_real_scrape(stack: Stack):
    # The metric names the panels and rules select, against the collector's own /metrics
    # (plus `up`, which Prometheus makes, and the recorded series).
    wanted = set()
    for query in [*panel_queries(), *rule_queries()]:
        wanted |= metric_names(query.expr)
    wanted -= recorded_names() | {"up"}

    def missing() -> set[str]:
        text = httpx.get(f"{stack.collector}/metrics", timeout=5, trust_env=False).text
        families = text_string_to_metric_families(text)
        scraped = {sample.name for family in families for sample in family.samples}
        return wanted - scraped

    stack.wait(lambda: not missing())
    assert missing() == set()


@pytest.mark.integration
def test_rules_loaded_with_the_test_for_override(stack: Stack):
    groups = stack.api("rules")["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {rule.get("alert") or rule["record"] for _, rule in rules()}
    for name in ALERT_RULES:
        assert loaded[name]["duration"] == 5, name
