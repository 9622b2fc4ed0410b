"""The deployment kit (issue 6, CONTRACT §8) holds together.

- The upstream tools accept the files: ``promtool check config|rules``, ``promtool test
  rules`` (the alerts fire on the series the collector exposes), ``amtool check-config``,
  ``hadolint``, and the daemon's own ``check-config`` for the collector configs.
- Every cross-reference resolves: bind mounts exist, ``depends_on`` and scrape targets,
  exporter endpoints and datasource URLs name compose services and ports those services
  listen on, mounted paths are the paths the commands read.
- Dashboards and rules query only metrics the collector or the SDK expose (CONTRACT §5),
  and every PromQL expression parses.
- ``scripts/monitoring-local.sh`` renders a valid loopback config and starts and stops
  the real Prometheus and Alertmanager (and the collector).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from helpers.procs import ManagedProcess, free_port, http_get, poll, wait_http

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.monitoring.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PROMETHEUS_CONFIG = REPO / "prometheus" / "prometheus.yml"
RULE_FILES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
ALERTMANAGER_CONFIG = REPO / "config" / "alertmanager.yml"
COLLECTOR_DOCKER_CONFIG = REPO / "config" / "collector.docker.yaml"
COLLECTOR_LOCAL_CONFIG = REPO / "config" / "collector.local.yaml"
DATASOURCES = REPO / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = REPO / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
LOCAL_SCRIPT = REPO / "scripts" / "monitoring-local.sh"

# The ports other files rely on, per compose service (container side). The test below
# derives the real table from the compose `ports:`/`expose:` entries and requires it to
# contain these; every cross-reference is then checked against the derived table.
EXPECTED_CONTAINER_PORTS = {
    "collector": {4317, 4318},  # OTLP/gRPC; HTTP (native, OTLP/HTTP, /metrics, /healthz)
    "prometheus": {9090},
    "alertmanager": {9093},
    "jaeger": {4317, 4318, 13133, 16686},  # OTLP gRPC/HTTP, health, UI + query API
    "grafana": {3000},
}

# Services allowed to run without a healthcheck, with the reason. All five images have
# a usable probe (python in ours; busybox wget in the Prometheus, Alertmanager, Jaeger
# (alpine) and Grafana (alpine) images), so none is exempt.
NO_HEALTHCHECK: dict[str, str] = {}

# CONTRACT §1: the collector config keys. The shipped configs may use only these.
CONTRACT_CONFIG_KEYS: dict[str, Any] = {
    "server": {
        "host": None,
        "http_port": None,
        "grpc_port": None,
        "max_body_bytes": None,
        "auth": {"tokens": None},
    },
    "queue": {"kind": None, "path": None, "max_items": None, "max_bytes": None},
    "exporters": {
        "prometheus": {"metric_expiration": None, "max_series": None},
        "jaeger": {"endpoint": None, "protocol": None},
        "alertmanager": {"urls": None, "resend_interval": None},
    },
    "health": {"default_ttl_seconds": None},
}

# CONTRACT §5, the collector's /metrics: health gauges and self-telemetry.
CONTRACT_METRICS = {
    "flext_service_health_status",
    "flext_service_health_last_report_timestamp_seconds",
    "flext_collector_received_items_total",
    "flext_collector_refused_items_total",
    "flext_collector_queue_items",
    "flext_collector_queue_capacity_items",
    "flext_collector_exported_items_total",
    "flext_collector_export_failures_total",
    "flext_collector_export_retries_total",
    "flext_collector_dropped_items_total",
    "flext_collector_exporter_up",
}
# CONTRACT §7, flext_monitor_function: calls counter by outcome and duration histogram.
SDK_METRICS = {
    "flext_function_calls_total",
    "flext_function_duration_seconds_bucket",
    "flext_function_duration_seconds_sum",
    "flext_function_duration_seconds_count",
}
# "plus process metrics" (CONTRACT §5), and Prometheus' own per-target series.
PROCESS_METRICS = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
}
SCRAPE_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
ALLOWED_METRICS = CONTRACT_METRICS | SDK_METRICS | PROCESS_METRICS | SCRAPE_METRICS

SEVERITIES = {"critical", "warning", "info"}

# Grafana's built-in variables, with a value for the PromQL syntax check.
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__interval_ms": "60000",
}

# --------------------------------------------------------------------------- helpers


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def tool(name: str) -> str:
    """Path of a binary: on PATH or next to this interpreter (the venv); skip if absent."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(reason=f"`{name}` is not installed; `make test` installs it (see the Makefile)")
    return found


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kwargs)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{shlex.join(result.args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def ports(services: dict[str, dict[str, Any]]) -> dict[str, set[int]]:
    """Container ports of each compose service, from its `ports:` and `expose:`."""
    return {name: container_ports(service) for name, service in services.items()}


def container_ports(service: dict[str, Any]) -> set[int]:
    found: set[int] = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):  # long syntax
            found.add(int(entry["target"]))
        else:  # [host_ip:][host_port:]container_port[/proto]; host_ip may be ${VAR:-x}
            found.add(int(str(entry).rsplit(":", 1)[-1].split("/")[0]))
    found.update(int(str(entry).split("/")[0]) for entry in service.get("expose", []))
    return found


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of the service's bind mounts."""
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            if entry.get("type") == "bind":
                mounts.append((entry["source"], entry["target"]))
            continue
        source, target = str(entry).split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts.append((source, target))
    return mounts


def named_volumes(service: dict[str, Any]) -> set[str]:
    names = set()
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            if entry.get("type") == "volume":
                names.add(entry["source"])
            continue
        source = str(entry).split(":")[0]
        if not source.startswith((".", "/", "~")):
            names.add(source)
    return names


def mount_target(service: dict[str, Any], host_path: str) -> str:
    """Where the service mounts the repository path ``host_path`` (e.g. ``./x.yml``)."""
    wanted = (REPO / host_path).resolve()
    for source, target in bind_mounts(service):
        if (REPO / source).resolve() == wanted:
            return target
    raise AssertionError(f"{host_path} is not bind-mounted into the service")


def command_flag(service: dict[str, Any], flag: str) -> str:
    command = service.get("command", [])
    if isinstance(command, str):
        command = shlex.split(command)
    for arg in command:
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{flag} is not set in the service's command {command}")


def healthcheck_urls(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    text = test if isinstance(test, str) else " ".join(test)
    # (a Kafka broker's check names its listener as --bootstrap-server host:port)
    brokers = [f"tcp://{a}" for a in re.findall(r"--bootstrap-server\s+([^\s'\"]+)", text)]
    return re.findall(r"https?://[^\s'\"]+", text) + brokers


def service_for_address(
    services: dict[str, dict[str, Any]], ports: dict[str, set[int]], address: str
) -> str:
    """The compose service that ``host:port`` or ``scheme://host:port/...`` names."""
    url = urlsplit(address if "://" in address else f"tcp://{address}")
    assert url.hostname in services, f"{address}: {url.hostname!r} is not a compose service"
    assert url.port is not None, f"{address}: no port"
    assert url.port in ports[url.hostname], (
        f"{address}: service {url.hostname!r} listens on {sorted(ports[url.hostname])}, "
        f"not {url.port}"
    )
    return url.hostname


def image_of(services: dict[str, dict[str, Any]], name: str) -> str:
    return services[name].get("image", "")


def scrape_targets(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(job_name, host:port) of every static scrape target."""
    return [
        (job["job_name"], target)
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]


def alertmanager_targets(config: dict[str, Any]) -> list[str]:
    return [
        target
        for am in config.get("alerting", {}).get("alertmanagers", [])
        for static in am.get("static_configs", [])
        for target in static["targets"]
    ]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last match wins)."""
    excluded = False
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatch(PurePosixPath(c).name, pattern[3:]) for c in candidates)
        else:
            matched = any(fnmatch.fnmatch(c, pattern) for c in candidates)
        if matched:
            excluded = not negate
    return excluded


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def dashboard_exprs() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) for every target of every panel."""
    return [
        (path.name, panel.get("title", "?"), target.get("expr", ""))
        for path in DASHBOARDS
        for panel in walk_panels(json.loads(path.read_text(encoding="utf-8"))["panels"])
        for target in panel.get("targets", [])
    ]


def rules() -> list[tuple[str, dict[str, Any]]]:
    """(rule file name, rule) for every recording and alerting rule."""
    return [
        (path.name, rule)
        for path in RULE_FILES
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    ]


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels, keywords)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = _LABEL_LIST.sub(" ", text)
    text = re.sub(r"\boffset\s+\S+", " ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group(0).lower() not in _KEYWORDS:
            names.add(match.group(0))
    return names


def grafana_variables(expr: str) -> set[str]:
    return {a or b for a, b in re.findall(r"\$\{(\w+)[^}]*\}|\$(\w+)", expr)}


def promql_for_promtool(expr: str) -> str:
    """A dashboard expr with Grafana's variables replaced so that promtool can parse it."""
    for name, value in GRAFANA_BUILTINS.items():
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return expr


def recorded_names() -> set[str]:
    return {rule["record"] for _, rule in rules() if "record" in rule}


# --------------------------------------------------------------------------- (a) tools


def test_promtool_accepts_prometheus_config():
    # rule_files are resolved relative to the config file, so this also checks the rules.
    result = run([tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG)])
    assert_ok(result)
    assert f"{len(RULE_FILES)} rule files found" in result.stdout + result.stderr


def test_promtool_accepts_rule_files():
    assert [p.name for p in RULE_FILES] == ["collector.yml", "services.yml"]
    assert_ok(run([tool("promtool"), "check", "rules", *map(str, RULE_FILES)]))


def test_amtool_accepts_alertmanager_config():
    assert_ok(run([tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG)]))


def test_hadolint_accepts_dockerfile():
    assert_ok(run([tool("hadolint"), "--no-color", str(DOCKERFILE)]))


@pytest.mark.parametrize("config", [COLLECTOR_DOCKER_CONFIG, COLLECTOR_LOCAL_CONFIG], ids=str)
def test_daemon_accepts_collector_config(config: Path):
    pythonpath = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)
    result = run(
        [sys.executable, "-m", "flext_observability", "check-config", str(config)],
        env={**os.environ, "PYTHONPATH": pythonpath},
    )
    assert_ok(result)


# `promtool test rules`: each alert fires on the series the collector exposes, with the
# labels and rendered annotations an on-call engineer gets (and not before its `for`).
COLLECTOR = {"job": "flext-observability", "instance": "collector:4318"}


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    """An input series of `promtool test rules`: ``metric{labels}`` and its values."""
    rendered = ", ".join(f'{name}="{value}"' for name, value in labels.items())
    return {"series": f"{metric}{{{rendered}}}", "values": values}


HEALTH = {"job": "flext-observability"}  # the gauges come from the collector's scrape
BILLING_HEALTH = {**HEALTH, "service": "billing", "instance": "billing-1"}
SEARCH_HEALTH = {**HEALTH, "service": "search", "instance": "search-1"}
MAIL_HEALTH = {**HEALTH, "service": "mail", "instance": "mail-1"}
CHARGE = {"job": "billing", "instance": "b1", "function": "charge"}
CHARGE_OK = {**CHARGE, "outcome": "success"}
CHARGE_ERROR = {**CHARGE, "outcome": "error"}
QUERY_OK = {"job": "search", "instance": "s1", "function": "query", "outcome": "success"}
QUERY_ERROR = {**QUERY_OK, "outcome": "error"}

RULE_UNIT_TESTS: list[dict[str, Any]] = [
    {
        "interval": "1m",
        "input_series": [series("up", "0x10", **COLLECTOR)],
        "alert_rule_test": [
            {"eval_time": "30s", "alertname": "FlextCollectorDown", "exp_alerts": []},
            {
                "eval_time": "2m",
                "alertname": "FlextCollectorDown",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "critical",
                            "job": "flext-observability",
                            "instance": "collector:4318",
                        },
                        "exp_annotations": {
                            "summary": "Collector collector:4318 is down",
                            "description": "Prometheus cannot scrape the flext-observability "
                            "collector at collector:4318: services cannot send telemetry and "
                            "nothing is exported.",
                        },
                    }
                ],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            series("flext_collector_queue_items", "900x10", **COLLECTOR, signal="spans"),
            series("flext_collector_queue_items", "0x10", **COLLECTOR, signal="metrics"),
            series("flext_collector_queue_capacity_items", "1000x10", **COLLECTOR),
        ],
        "promql_expr_test": [
            {
                "expr": "instance:flext_collector_queue_fill:ratio",
                "eval_time": "1m",
                "exp_samples": [
                    {
                        "labels": series(
                            "instance:flext_collector_queue_fill:ratio", "", **COLLECTOR
                        )["series"],
                        "value": 0.9,
                    }
                ],
            }
        ],
        "alert_rule_test": [
            {
                "eval_time": "6m",
                "alertname": "FlextCollectorQueueFilling",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "job": "flext-observability",
                            "instance": "collector:4318",
                        },
                        "exp_annotations": {
                            "summary": "Collector queue is 90% full",
                            "description": "The queue of collector:4318 holds 90% of "
                            "queue.max_items. At 100% ingestion answers 429/503. An exporter "
                            "is probably slow or down (see FlextCollectorExporterDown).",
                        },
                    }
                ],
            }
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            series(
                "flext_collector_refused_items_total",
                "0+6x20",
                **COLLECTOR,
                signal="metrics",
                reason="validation",
            ),
            series(
                "flext_collector_export_failures_total", "0+30x20", **COLLECTOR, exporter="jaeger"
            ),
            series("flext_collector_exporter_up", "0x20", **COLLECTOR, exporter="jaeger"),
            series("flext_collector_exporter_up", "1x20", **COLLECTOR, exporter="alertmanager"),
            series(
                "flext_collector_dropped_items_total",
                "0+3x20",
                **COLLECTOR,
                exporter="alertmanager",
                reason="http_400",
            ),
        ],
        "alert_rule_test": [
            {
                "eval_time": "10m",
                "alertname": "FlextCollectorRefusingItems",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "job": "flext-observability",
                            "instance": "collector:4318",
                            "signal": "metrics",
                            "reason": "validation",
                        },
                        "exp_annotations": {
                            "summary": "Collector refuses metrics items (validation)",
                            "description": "collector:4318 refused 0.1 metrics items/s over the "
                            'last 5m with reason "validation". Senders got 4xx/429/503 answers: '
                            "check their payloads, or the queue if it is full.",
                        },
                    }
                ],
            },
            {
                "eval_time": "10m",
                "alertname": "FlextCollectorExportFailing",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "job": "flext-observability",
                            "instance": "collector:4318",
                            "exporter": "jaeger",
                        },
                        "exp_annotations": {
                            "summary": "Exporter jaeger is failing",
                            "description": "The jaeger exporter of collector:4318 failed 0.5 "
                            "attempts/s over the last 5m; items stay queued and are retried.",
                        },
                    }
                ],
            },
            {"eval_time": "1m", "alertname": "FlextCollectorExporterDown", "exp_alerts": []},
            {
                "eval_time": "3m",
                "alertname": "FlextCollectorExporterDown",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "critical",
                            "job": "flext-observability",
                            "instance": "collector:4318",
                            "exporter": "jaeger",
                        },
                        "exp_annotations": {
                            "summary": "Exporter jaeger is down",
                            "description": "The last attempts of the jaeger exporter of "
                            "collector:4318 have failed for 2m: its downstream is unreachable "
                            "or refusing data, and the queue is growing.",
                        },
                    }
                ],
            },
            {
                "eval_time": "10m",
                "alertname": "FlextCollectorDroppingItems",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "job": "flext-observability",
                            "instance": "collector:4318",
                            "exporter": "alertmanager",
                            "reason": "http_400",
                        },
                        "exp_annotations": {
                            "summary": "Exporter alertmanager drops items (http_400)",
                            "description": "collector:4318 dropped 0.05 items/s of the "
                            'alertmanager exporter with reason "http_400" (e.g. a permanent '
                            "4xx from the downstream). That data is lost; see the collector log.",
                        },
                    }
                ],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            series("flext_service_health_status", "1x10", **BILLING_HEALTH, status="unhealthy"),
            series("flext_service_health_status", "0x10", **BILLING_HEALTH, status="healthy"),
            series("flext_service_health_status", "1x10", **SEARCH_HEALTH, status="stale"),
            series("flext_service_health_status", "0x10", **SEARCH_HEALTH, status="degraded"),
            series("flext_service_health_status", "1x10", **MAIL_HEALTH, status="degraded"),
        ],
        "alert_rule_test": [
            {
                "eval_time": "2m",
                "alertname": "FlextServiceUnhealthy",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "critical",
                            "job": "flext-observability",
                            "service": "billing",
                            "instance": "billing-1",
                            "status": "unhealthy",
                        },
                        "exp_annotations": {
                            "summary": "Service billing is unhealthy",
                            "description": 'billing (billing-1) has reported status "unhealthy" '
                            "for 1m. GET /api/v1/health on the collector shows its failing checks.",
                        },
                    }
                ],
            },
            {"eval_time": "4m", "alertname": "FlextServiceDegraded", "exp_alerts": []},
            {
                "eval_time": "6m",
                "alertname": "FlextServiceDegraded",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "job": "flext-observability",
                            "service": "mail",
                            "instance": "mail-1",
                            "status": "degraded",
                        },
                        "exp_annotations": {
                            "summary": "Service mail is degraded",
                            "description": 'mail (mail-1) has reported status "degraded" for '
                            "5m. GET /api/v1/health on the collector shows which checks.",
                        },
                    }
                ],
            },
            {
                "eval_time": "2m",
                "alertname": "FlextServiceHealthStale",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "job": "flext-observability",
                            "service": "search",
                            "instance": "search-1",
                            "status": "stale",
                        },
                        "exp_annotations": {
                            "summary": "Service search stopped reporting health",
                            "description": "No health report from search (search-1) within its "
                            "ttl: the service may be down, or unable to reach the collector.",
                        },
                    }
                ],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            # billing/charge: 10% errors; search/query: 1% errors (below the 5% threshold).
            series("flext_function_calls_total", "0+90x20", **CHARGE_OK),
            series("flext_function_calls_total", "0+10x20", **CHARGE_ERROR),
            series("flext_function_calls_total", "0+99x20", **QUERY_OK),
            series("flext_function_calls_total", "0+1x20", **QUERY_ERROR),
            # billing/charge: every call between 1s and 2.5s -> p95 = 1 + 1.5 * 0.95 = 2.425s.
            series("flext_function_duration_seconds_bucket", "0x20", **CHARGE_OK, le="0.5"),
            series("flext_function_duration_seconds_bucket", "0x20", **CHARGE_OK, le="1"),
            series("flext_function_duration_seconds_bucket", "0+10x20", **CHARGE_OK, le="2.5"),
            series("flext_function_duration_seconds_bucket", "0+10x20", **CHARGE_OK, le="+Inf"),
        ],
        "alert_rule_test": [
            {
                "eval_time": "10m",
                "alertname": "FlextFunctionErrorRatioHigh",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "job": "billing",
                            "function": "charge",
                        },
                        "exp_annotations": {
                            "summary": "billing: charge fails 10% of calls",
                            "description": "More than 5% of the calls to charge in service "
                            "billing ended with an exception over the last 5m (10%). The spans "
                            "in Jaeger have the exceptions.",
                        },
                    }
                ],
            },
            {"eval_time": "5m", "alertname": "FlextFunctionLatencyHigh", "exp_alerts": []},
            {
                "eval_time": "15m",
                "alertname": "FlextFunctionLatencyHigh",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "job": "billing",
                            "function": "charge",
                        },
                        "exp_annotations": {
                            "summary": "billing: charge p95 latency is 2.425s",
                            "description": "The 95th percentile duration of charge in service "
                            "billing has been above 1s for 10m (2.425s).",
                        },
                    }
                ],
            },
        ],
    },
]


def test_alert_rules_fire_on_collector_series(tmp_path: Path):
    tests_file = tmp_path / "rules_test.yml"
    tests_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(path) for path in RULE_FILES],
                "evaluation_interval": "1m",
                "tests": RULE_UNIT_TESTS,
            },
            sort_keys=False,
        )
    )
    assert_ok(run([tool("promtool"), "test", "rules", str(tests_file)]))


def test_every_alert_has_a_unit_test():
    tested = {
        case["alertname"]
        for test in RULE_UNIT_TESTS
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    alerts = {rule["alert"] for _, rule in rules() if "alert" in rule}
    assert alerts - tested == set()


# --------------------------------------------------------------------------- (b) compose


# The `kafka` profile's services (README "Scaling out"), started only with --profile kafka.
KAFKA_PROFILE_PORTS = {"kafka": {9092, 9093}, "collector-a": {4317, 4318},
                       "collector-b": {4317, 4318}}


def test_compose_has_the_five_services(services: dict[str, dict[str, Any]]):
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == set(EXPECTED_CONTAINER_PORTS)
    assert set(services) - default == set(KAFKA_PROFILE_PORTS)
    for name, expected in KAFKA_PROFILE_PORTS.items():
        assert services[name]["profiles"] == ["kafka"]
        assert expected <= container_ports(services[name]), name
    assert services["collector"]["build"]["context"] == "."
    assert (REPO / services["collector"]["build"].get("dockerfile", "Dockerfile")).is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED_CONTAINER_PORTS))
def test_image_is_pinned(services: dict[str, dict[str, Any]], name: str):
    image = image_of(services, name)
    if name == "collector":
        assert "build" in services[name]
        return
    repository, _, tag = image.rpartition(":")
    assert repository, f"{name}: image {image!r} has no tag"
    assert tag != "latest"
    assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image!r} is not pinned to x.y.z"


def test_container_port_table_matches_compose(ports: dict[str, set[int]]):
    for name, expected in EXPECTED_CONTAINER_PORTS.items():
        assert expected <= ports[name], f"{name} listens on {sorted(ports[name])}"


def test_published_ports_are_declared_in_expose(services: dict[str, dict[str, Any]]):
    # `expose` is the full list of listening ports the other checks rely on.
    for name, service in services.items():
        published = container_ports({"ports": service.get("ports", [])})
        exposed = container_ports({"expose": service.get("expose", [])})
        assert published <= exposed, f"{name}: {sorted(published - exposed)} not in expose"


def test_bind_mounted_paths_exist(services: dict[str, dict[str, Any]]):
    mounts = [(name, src) for name, s in services.items() for src, _ in bind_mounts(s)]
    assert {source for _, source in mounts} >= {
        "./config/collector.docker.yaml",
        "./config/alertmanager.yml",
        "./prometheus/prometheus.yml",
        "./prometheus/rules",
        "./grafana/provisioning",
        "./grafana/dashboards",
    }
    for name, source in mounts:
        assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"


@pytest.mark.parametrize("name", sorted(EXPECTED_CONTAINER_PORTS))
def test_service_has_healthcheck(services: dict[str, dict[str, Any]], name: str):
    if name in NO_HEALTHCHECK:
        pytest.skip(reason=NO_HEALTHCHECK[name])
    check = services[name].get("healthcheck")
    assert check, f"{name} has no healthcheck"
    assert check["test"][0] in {"CMD", "CMD-SHELL"}
    assert not check.get("disable", False)


def test_healthchecks_probe_a_port_the_service_listens_on(
    services: dict[str, dict[str, Any]], ports: dict[str, set[int]]
):
    for name, service in services.items():
        if "healthcheck" not in service:
            continue
        urls = healthcheck_urls(service)
        assert urls, f"{name}: healthcheck probes no URL"
        for url in urls:
            parts = urlsplit(url)
            assert parts.hostname in {"127.0.0.1", "localhost"}, url
            assert parts.port in ports[name], f"{name}: {url} is not a port it listens on"


def test_depends_on_names_healthy_services(services: dict[str, dict[str, Any]]):
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: use the long form with a condition"
        for dependency, spec in depends.items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert dependency != name
            assert spec["condition"] == "service_healthy"
            assert "healthcheck" in services[dependency]


def test_named_volumes_are_declared_and_used(compose: dict[str, Any]):
    used = set().union(*(named_volumes(s) for s in compose["services"].values()))
    declared = set(compose.get("volumes") or {})
    assert used == declared
    assert {"collector-data", "prometheus-data", "grafana-data"} <= used


def test_prometheus_targets_are_compose_services(
    services: dict[str, dict[str, Any]], ports: dict[str, set[int]]
):
    config = load_yaml(PROMETHEUS_CONFIG)
    targets = dict(scrape_targets(config))
    assert {service_for_address(services, ports, t) for t in targets.values()} == {
        "collector",
        "prometheus",
        "alertmanager",
    }
    collector_jobs = [
        job for job in config["scrape_configs"] if "collector:4318" in str(job["static_configs"])
    ]
    assert len(collector_jobs) == 1
    assert collector_jobs[0]["honor_labels"] is True
    assert collector_jobs[0].get("metrics_path", "/metrics") == "/metrics"
    assert collector_jobs[0].get("scrape_interval", config["global"]["scrape_interval"]) == "15s"
    assert config["rule_files"] == ["rules/*.yml"]


def test_collector_down_alert_matches_the_scrape_job():
    jobs = [
        job["job_name"]
        for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]
        if any("collector:" in t for s in job["static_configs"] for t in s["targets"])
    ]
    (down,) = [rule for _, rule in rules() if rule.get("alert") == "FlextCollectorDown"]
    assert f'up{{job="{jobs[0]}"}}' in down["expr"]


def test_prometheus_alerts_go_to_the_alertmanager_service(
    services: dict[str, dict[str, Any]], ports: dict[str, set[int]]
):
    targets = alertmanager_targets(load_yaml(PROMETHEUS_CONFIG))
    assert targets
    for target in targets:
        name = service_for_address(services, ports, target)
        assert "alertmanager" in image_of(services, name)


def test_prometheus_mounts_match_its_command(services: dict[str, dict[str, Any]]):
    prometheus = services["prometheus"]
    config_path = mount_target(prometheus, "./prometheus/prometheus.yml")
    assert command_flag(prometheus, "--config.file") == config_path
    # rule_files resolve relative to the config file's directory.
    rules_dir = PurePosixPath(config_path).parent / "rules"
    assert mount_target(prometheus, "./prometheus/rules") == str(rules_dir)
    assert command_flag(prometheus, "--storage.tsdb.path") in {
        target for _, target in (v.split(":")[:2] for v in prometheus["volumes"])
    }


def test_alertmanager_mount_matches_its_command(services: dict[str, dict[str, Any]]):
    alertmanager = services["alertmanager"]
    config_path = mount_target(alertmanager, "./config/alertmanager.yml")
    assert command_flag(alertmanager, "--config.file") == config_path


def test_collector_config_points_at_compose_services(
    services: dict[str, dict[str, Any]], ports: dict[str, set[int]]
):
    config = load_yaml(COLLECTOR_DOCKER_CONFIG)
    server = config["server"]
    assert server["host"] == "0.0.0.0"
    assert {server["http_port"], server["grpc_port"]} <= ports["collector"]

    jaeger = config["exporters"]["jaeger"]
    name = service_for_address(services, ports, jaeger["endpoint"])
    assert "jaeger" in image_of(services, name)
    otlp_port = {"grpc": 4317, "http/protobuf": 4318}[jaeger["protocol"]]
    assert urlsplit(jaeger["endpoint"]).port == otlp_port

    urls = config["exporters"]["alertmanager"]["urls"]
    assert urls
    for url in urls:
        assert "alertmanager" in image_of(services, service_for_address(services, ports, url))


def test_collector_queue_lives_on_a_named_volume(services: dict[str, dict[str, Any]]):
    queue = load_yaml(COLLECTOR_DOCKER_CONFIG)["queue"]
    collector = services["collector"]
    volume_targets = {
        str(v).split(":")[1]
        for v in collector["volumes"]
        if str(v).split(":")[0] in named_volumes(collector)
    }
    assert queue["kind"] == "disk"
    assert queue["path"] in volume_targets


def test_collector_healthcheck_uses_the_configured_port(services: dict[str, dict[str, Any]]):
    http_port = load_yaml(COLLECTOR_DOCKER_CONFIG)["server"]["http_port"]
    for url in healthcheck_urls(services["collector"]):
        assert urlsplit(url).port == http_port
        assert urlsplit(url).path == "/healthz"


@pytest.mark.parametrize("config", [COLLECTOR_DOCKER_CONFIG, COLLECTOR_LOCAL_CONFIG], ids=str)
def test_collector_config_uses_only_contract_keys(config: Path):
    def check(data: dict[str, Any], allowed: dict[str, Any], path: str) -> None:
        for key, value in data.items():
            assert key in allowed, f"{path}{key} is not a CONTRACT §1 key"
            if isinstance(allowed[key], dict):
                assert isinstance(value, dict), f"{path}{key} must be a mapping"
                check(value, allowed[key], f"{path}{key}.")

    data = load_yaml(config)
    check(data, CONTRACT_CONFIG_KEYS, "")
    assert set(data) == set(CONTRACT_CONFIG_KEYS)


@pytest.mark.parametrize("config", [COLLECTOR_DOCKER_CONFIG, COLLECTOR_LOCAL_CONFIG], ids=str)
def test_collector_config_comments_every_key(config: Path):
    # Every key with a value (or a list) has a comment on the line above or inline;
    # section headers (server:, queue:, ...) are exempt.
    lines = [line for line in config.read_text(encoding="utf-8").splitlines() if line.strip()]
    for number, line in enumerate(lines):
        key = re.match(r"^(\s*)([a-z_]+):(.*)$", line)
        if key is None:
            continue
        value = key.group(3).split("#")[0].strip()
        following = lines[number + 1].strip() if number + 1 < len(lines) else ""
        if not value and not following.startswith("-"):
            continue  # a section
        commented = "#" in key.group(3) or lines[number - 1].strip().startswith("#")
        assert commented, f"{config.name}: `{line.strip()}` has no comment"


def test_local_collector_config_targets_loopback():
    config = load_yaml(COLLECTOR_LOCAL_CONFIG)
    assert config["server"]["host"] == "127.0.0.1"
    assert config["exporters"]["jaeger"]["endpoint"] is None
    assert config["exporters"]["alertmanager"]["urls"] == ["http://127.0.0.1:9093"]


def test_grafana_datasources_point_at_compose_services(
    services: dict[str, dict[str, Any]], ports: dict[str, set[int]]
):
    datasources = {d["uid"]: d for d in load_yaml(DATASOURCES)["datasources"]}
    assert {"prometheus", "jaeger"} <= set(datasources)
    for uid, kind in (("prometheus", "prom/prometheus"), ("jaeger", "jaeger")):
        assert datasources[uid]["type"] == uid
        name = service_for_address(services, ports, datasources[uid]["url"])
        assert kind in image_of(services, name)
    assert datasources["jaeger"]["url"].endswith(":16686")
    for datasource in datasources.values():
        service_for_address(services, ports, datasource["url"])


def test_grafana_provisioning_is_mounted(services: dict[str, dict[str, Any]]):
    grafana = services["grafana"]
    assert mount_target(grafana, "./grafana/provisioning") == "/etc/grafana/provisioning"
    dashboards_dir = mount_target(grafana, "./grafana/dashboards")
    providers = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    assert [p["options"]["path"] for p in providers] == [dashboards_dir]
    assert all(p["type"] == "file" for p in providers)


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_stages_use_a_pinned_slim_bookworm_python():
    bases = [args.split()[0] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert len(bases) >= 2, "builder and runtime stages"
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base


def test_dockerfile_runtime_contract():
    instructions = dockerfile_instructions()
    runtime = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    by_keyword: dict[str, list[str]] = {}
    for keyword, args in runtime:
        by_keyword.setdefault(keyword, []).append(args)

    (user,) = by_keyword["USER"]
    assert user.split(":")[0] not in {"0", "root"}
    assert "--uid 10001" in " ".join(by_keyword["RUN"])

    server = load_yaml(COLLECTOR_DOCKER_CONFIG)["server"]
    exposed = {int(p) for args in by_keyword["EXPOSE"] for p in args.split()}
    assert exposed == {server["grpc_port"], server["http_port"]}

    (healthcheck,) = by_keyword["HEALTHCHECK"]
    assert f"http://127.0.0.1:{server['http_port']}/healthz" in healthcheck
    assert "urllib" in healthcheck

    (volume,) = by_keyword["VOLUME"]
    assert json.loads(volume) == [load_yaml(COLLECTOR_DOCKER_CONFIG)["queue"]["path"]]

    (cmd,) = by_keyword["CMD"]
    assert json.loads(cmd) == [
        "flext-observability",
        "serve",
        "--config",
        "/etc/flext-observability/collector.yaml",
    ]
    assert "VIRTUAL_ENV=/opt/venv" in " ".join(by_keyword["ENV"])


def test_compose_mounts_the_config_where_the_image_reads_it(services: dict[str, dict[str, Any]]):
    (cmd,) = [json.loads(a) for k, a in dockerfile_instructions() if k == "CMD"]
    config_path = cmd[cmd.index("--config") + 1]
    assert mount_target(services["collector"], "./config/collector.docker.yaml") == config_path
    copies = [a.split() for k, a in dockerfile_instructions() if k == "COPY" and "--from" not in a]
    assert ["config/collector.docker.yaml", config_path] in copies


def test_dockerfile_copies_only_what_the_context_contains():
    for keyword, args in dockerfile_instructions():
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, _destination = args.split()
        for source in sources:
            if any(ch in source for ch in "*?["):
                continue  # optional files (README.md*)
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert not dockerignore_excludes(source), f"COPY {source}: excluded by .dockerignore"


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        (".venv/bin/python", True),
        (".git/HEAD", True),
        (".flext-observability/queue.db", True),
        ("tests/conftest.py", True),
        ("src/flext_observability/__pycache__/cli.cpython-311.pyc", True),
        ("src/flext_observability/cli.py", False),
        ("pyproject.toml", False),
        ("config/collector.docker.yaml", False),
        ("config/collector.local.yaml", True),
    ],
)
def test_dockerignore_keeps_local_state_out(path: str, excluded: bool):
    assert dockerignore_excludes(path) is excluded


# --------------------------------------------------------------------------- (c) dashboards


def test_dashboards_are_provisionable():
    assert {p.name for p in DASHBOARDS} == {"collector-overview.json", "services.json"}
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        assert dashboard["schemaVersion"] == 39
        assert dashboard["uid"] not in uids
        uids.add(dashboard["uid"])
        assert dashboard.get("id") is None, f"{path.name}: provisioned dashboards have no id"
        panel_ids = [p["id"] for p in walk_panels(dashboard["panels"])]
        assert len(panel_ids) == len(set(panel_ids)), f"{path.name}: duplicate panel ids"
        for panel in walk_panels(dashboard["panels"]):
            assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]


def test_every_panel_has_a_query():
    for path in DASHBOARDS:
        for panel in walk_panels(json.loads(path.read_text(encoding="utf-8"))["panels"]):
            if panel["type"] == "row":
                continue
            exprs = [t.get("expr", "").strip() for t in panel.get("targets", [])]
            assert exprs, f"{path.name}: panel {panel.get('title')!r} has no targets"
            assert all(exprs), f"{path.name}: panel {panel.get('title')!r} has an empty expr"


def test_dashboards_use_provisioned_datasources():
    uids = {d["uid"] for d in load_yaml(DATASOURCES)["datasources"]}
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        variables = dashboard["templating"]["list"]
        for item in [*walk_panels(dashboard["panels"]), *variables]:
            for holder in [item, *item.get("targets", [])]:
                datasource = holder.get("datasource")
                if datasource is not None:
                    assert datasource["uid"] in uids, f"{path.name}: {datasource}"
                    assert datasource["uid"] == "prometheus"


def test_dashboard_variables_are_defined():
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        defined = {v["name"] for v in dashboard["templating"]["list"]}
        for _, title, expr in [e for e in dashboard_exprs() if e[0] == path.name]:
            used = {v for v in grafana_variables(expr) if v not in GRAFANA_BUILTINS}
            assert used <= defined, f"{path.name}: {title!r} uses undefined {used - defined}"


def test_dashboards_query_only_known_metrics():
    seen = set()
    for name, title, expr in dashboard_exprs():
        names = metric_names(expr)
        assert names, f"{name}: {title!r}: no metric in {expr!r}"
        assert names <= ALLOWED_METRICS, f"{name}: {title!r} queries {names - ALLOWED_METRICS}"
        seen |= names
    # Every self-telemetry, health and SDK metric is on some panel.
    missing = (CONTRACT_METRICS | SDK_METRICS) - seen
    assert missing == set(), f"no panel shows {missing}"


def test_rules_query_only_known_metrics():
    allowed = ALLOWED_METRICS | recorded_names()
    for name, rule in rules():
        names = metric_names(rule["expr"])
        assert names, f"{name}: {rule} selects no metric"
        assert names <= allowed, (
            f"{name}: {rule.get('alert') or rule.get('record')}: {names - allowed}"
        )


def test_alerts_have_severity_summary_and_description():
    alerts = [(name, rule) for name, rule in rules() if "alert" in rule]
    assert len(alerts) >= 11
    assert len({rule["alert"] for _, rule in alerts}) == len(alerts)
    for name, rule in alerts:
        assert rule["alert"].startswith("Flext"), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, f"{name}: {rule['alert']}"
        assert rule["annotations"]["summary"].strip()
        assert rule["annotations"]["description"].strip()


def test_recording_rules_follow_naming_convention():
    for name, record in [(n, r["record"]) for n, r in rules() if "record" in r]:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", record), f"{name}: {record}"


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up", {"up"}),
        ('up{job="flext-observability", instance=~"$instance"} == 0', {"up"}),
        (
            'histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{x="y"}[$__rate_interval])))',
            {"a_bucket"},
        ),
        ("sum(rate(a_total[5m])) by (job) / ignoring(x) group_left(y) b", {"a_total", "b"}),
        ("count(m == 1) or vector(0)", {"m"}),
        ("time() - last_seen_seconds offset 5m", {"last_seen_seconds"}),
        ("rate(x[1m]) > 1e3 and on(job) y", {"x", "y"}),
        ("job:a:rate5m / job:b:rate5m", {"job:a:rate5m", "job:b:rate5m"}),
    ],
)
def test_metric_name_extraction(expr: str, expected: set[str]):
    assert metric_names(expr) == expected


# --------------------------------------------------------------------------- (d) PromQL


def test_dashboard_exprs_parse(tmp_path: Path):
    rules_file = tmp_path / "dashboards.yml"
    exprs = dashboard_exprs()
    rules_file.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "dashboards",
                        "rules": [
                            {"record": f"dashboard:panel_{i}", "expr": promql_for_promtool(expr)}
                            for i, (_, _, expr) in enumerate(exprs)
                        ],
                    }
                ]
            }
        )
    )
    result = run([tool("promtool"), "check", "rules", str(rules_file)])
    assert_ok(result)
    assert f"{len(exprs)} rules found" in result.stdout


def test_promql_check_catches_a_broken_expr(tmp_path: Path):
    # The check above would be worthless if promtool accepted anything.
    rules_file = tmp_path / "broken.yml"
    rules_file.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "g", "rules": [{"record": "a:b:c", "expr": "sum(rate(x[5m])"}]}]}
        )
    )
    assert run([tool("promtool"), "check", "rules", str(rules_file)]).returncode != 0


# --------------------------------------------------------------------------- local stack


def test_local_config_is_derived_from_the_shipped_one(tmp_path: Path):
    env = {**os.environ, "PROM_PORT": "19090", "AM_PORT": "19093", "COLLECTOR_HTTP_PORT": "14318"}
    assert_ok(run([str(LOCAL_SCRIPT), "--render", str(tmp_path)], env=env))
    config = load_yaml(tmp_path / "prometheus.yml")
    shipped = load_yaml(PROMETHEUS_CONFIG)
    assert dict(scrape_targets(config)) == {
        "flext-observability": "127.0.0.1:14318",
        "prometheus": "127.0.0.1:19090",
        "alertmanager": "127.0.0.1:19093",
    }
    assert alertmanager_targets(config) == ["127.0.0.1:19093"]
    # Only the addresses differ.
    for job, local_job in zip(shipped["scrape_configs"], config["scrape_configs"], strict=True):
        assert {k: v for k, v in job.items() if k != "static_configs"} == {
            k: v for k, v in local_job.items() if k != "static_configs"
        }
    assert config["rule_files"] == shipped["rule_files"]
    result = run([tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")])
    assert_ok(result)
    assert f"{len(RULE_FILES)} rule files found" in result.stdout + result.stderr


def _child_pids(log: Path) -> dict[str, int]:
    found = re.findall(r"monitoring-local: (\w+) pid (\d+)", log.read_text())
    return {name: int(pid) for name, pid in found}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it has stopped running all the same.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def _start_local_stack(tmp_path: Path, *args: str, env: dict[str, str]) -> ManagedProcess:
    tool("prometheus")
    tool("prometheus-alertmanager")
    stack = ManagedProcess(
        [str(LOCAL_SCRIPT), *args],
        tmp_path,
        "monitoring-local",
        env={"DATA_DIR": str(tmp_path / "data"), **env},
        ready_url=f"http://127.0.0.1:{env['PROM_PORT']}/-/ready",
        ready_timeout=30,
    )
    stack.start()
    wait_http(f"http://127.0.0.1:{env['AM_PORT']}/-/ready", 20, process=stack)
    return stack


def _stop_and_check_children(stack: ManagedProcess, expected: set[str]) -> None:
    children = _child_pids(stack.log_path)
    assert set(children) == expected
    assert stack.stop() == 128 + signal.SIGTERM
    for name, pid in children.items():
        poll(lambda pid=pid: _gone(pid), bool, 10, 0.1, f"{name} (pid {pid}) to exit")


def _prometheus_api(port: str, path: str, **params: Any) -> Any:
    body = http_get(f"http://127.0.0.1:{port}/api/v1/{path}", **params).json()
    assert body["status"] == "success", body
    return body["data"]


@pytest.mark.integration
def test_local_stack_runs_prometheus_and_alertmanager(tmp_path: Path):
    env = {"PROM_PORT": str(free_port()), "AM_PORT": str(free_port())}
    stack = _start_local_stack(tmp_path, "--no-collector", env=env)
    try:
        groups = _prometheus_api(env["PROM_PORT"], "rules")["groups"]
        loaded = {rule["name"] for group in groups for rule in group["rules"]}
        expected = {rule.get("alert") or rule["record"] for _, rule in rules()}
        assert loaded == expected
        alertmanagers = poll(
            lambda: _prometheus_api(env["PROM_PORT"], "alertmanagers")["activeAlertmanagers"],
            bool,
            10,
            0.2,
            "Prometheus to discover Alertmanager",
        )
        assert [a["url"] for a in alertmanagers] == [
            f"http://127.0.0.1:{env['AM_PORT']}/api/v2/alerts"
        ]
        status = http_get(f"http://127.0.0.1:{env['AM_PORT']}/api/v2/status").json()
        route = yaml.safe_load(status["config"]["original"])["route"]
        assert route["group_by"] == load_yaml(ALERTMANAGER_CONFIG)["route"]["group_by"]
    finally:
        stack.stop()
    _stop_and_check_children(stack, {"alertmanager", "prometheus"})


@pytest.mark.integration
def test_local_stack_scrapes_the_collector(tmp_path: Path):
    # The collector runs from this checkout, like the other integration tests.
    wrapper = tmp_path / "flext-observability"
    wrapper.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m flext_observability "$@"\n'
    )
    wrapper.chmod(0o755)
    pythonpath = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {
        "PROM_PORT": str(free_port()),
        "AM_PORT": str(free_port()),
        "COLLECTOR_HTTP_PORT": str(free_port()),
        "COLLECTOR_GRPC_PORT": str(free_port()),
        "FLEXT_OBS_BIN": str(wrapper),
        "PYTHONPATH": pythonpath,
    }
    stack = _start_local_stack(tmp_path, env=env)
    try:
        wait_http(f"http://127.0.0.1:{env['COLLECTOR_HTTP_PORT']}/healthz", 20, process=stack)
        # Prometheus syncs targets every 5s, then scrapes within the 15s interval.
        query = 'flext_collector_queue_capacity_items{job="flext-observability"}'
        try:
            result = poll(
                lambda: _prometheus_api(env["PROM_PORT"], "query", query=query)["result"],
                bool,
                40,
                0.5,
                "the collector's series in Prometheus",
            )
        except TimeoutError:
            targets = _prometheus_api(env["PROM_PORT"], "targets")["activeTargets"]
            pytest.fail(f"no collector series in Prometheus; targets: {targets}")
        assert result[0]["metric"]["instance"] == f"127.0.0.1:{env['COLLECTOR_HTTP_PORT']}"
        assert (
            float(result[0]["value"][1]) == load_yaml(COLLECTOR_LOCAL_CONFIG)["queue"]["max_items"]
        )
        assert (tmp_path / "data" / "collector-queue").is_dir()
    finally:
        stack.stop()
    _stop_and_check_children(stack, {"alertmanager", "collector", "prometheus"})
