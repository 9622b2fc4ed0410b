"""The real peers built by `make peers` (.peers/bin/): Jaeger v2 and the OpenTelemetry Collector.

Each runs as a process on free loopback ports with a config written by the test. A missing
binary is an error, not a skip: `make test` builds the peers first, so a missing one means
the build was skipped or failed, and the test says to run `make peers`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

from .procs import REPO_ROOT, ManagedProcess, free_ports, http_get, poll

PEERS_BIN = REPO_ROOT / ".peers" / "bin"


class PeerMissing(RuntimeError):
    """A peer binary is not in .peers/bin/."""


def peer_binary(name: str) -> Path:
    """``.peers/bin/<name>``, or PeerMissing saying to run `make peers`."""
    path = PEERS_BIN / name
    if not path.exists():
        raise PeerMissing(
            f"{path} is missing: run `make peers` (builds the OpenTelemetry Collector and "
            "Jaeger from the Go module proxy; Go >= 1.26; `make test` runs it first)"
        )
    return path


class Jaeger(ManagedProcess):
    """Jaeger v2 all-in-one with memory storage, every listener on 127.0.0.1 and a free port.

    ``url`` is the query service (``/api/services``, ``/api/traces/<id>``); spans go to
    ``otlp_grpc_endpoint`` or ``otlp_http_endpoint``. The memory storage starts empty at
    every start; a ``stop`` and ``start`` keep the ports.
    """

    def __init__(self, work_dir: Path) -> None:
        query_http, query_grpc, otlp_grpc, otlp_http = free_ports(4)
        self.url = f"http://127.0.0.1:{query_http}"
        self.otlp_grpc_endpoint = f"http://127.0.0.1:{otlp_grpc}"
        self.otlp_http_endpoint = f"http://127.0.0.1:{otlp_http}"
        config = {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {
                    "traces": {"receivers": ["otlp"], "exporters": ["jaeger_storage_exporter"]}
                },
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
            },
            "extensions": {
                "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 100_000}}}},
                "jaeger_query": {
                    "storage": {"traces": "memstore"},
                    "enable_tracing": False,
                    "http": {"endpoint": f"127.0.0.1:{query_http}"},
                    "grpc": {"endpoint": f"127.0.0.1:{query_grpc}"},
                },
            },
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": f"127.0.0.1:{otlp_grpc}"},
                        "http": {"endpoint": f"127.0.0.1:{otlp_http}"},
                    }
                }
            },
            "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
        }
        work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = work_dir / "jaeger.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        super().__init__(
            [peer_binary("jaeger"), "--config", f"file:{self.config_path}"],
            work_dir,
            "jaeger",
            ready_url=f"{self.url}/api/services",
        )

    def otlp_endpoint(self, protocol: str) -> str:
        """The OTLP receiver for ``grpc`` or ``http/protobuf``."""
        return self.otlp_grpc_endpoint if protocol == "grpc" else self.otlp_http_endpoint

    def services(self) -> list[str]:
        """GET /api/services: the service names of every span stored."""
        response = http_get(f"{self.url}/api/services")
        response.raise_for_status()
        return response.json()["data"] or []

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """GET /api/traces/<id>: the trace (``spans``, ``processes``), or None if unknown."""
        response = http_get(f"{self.url}/api/traces/{trace_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        data = response.json()["data"]
        return data[0] if data else None

    def wait_for_spans(
        self, wanted: dict[str, set[str]], timeout: float = 20
    ) -> dict[str, dict[str, Any]]:
        """Poll until every trace in ``wanted`` (trace id -> span ids) holds those spans;
        the traces by id."""

        def fetch() -> dict[str, dict[str, Any] | None]:
            try:
                return {trace_id: self.trace(trace_id) for trace_id in wanted}
            except httpx.TransportError:
                return {}

        def complete(traces: dict[str, dict[str, Any] | None]) -> bool:
            return all(
                (trace := traces.get(trace_id)) is not None
                and span_ids <= {span_hex(s["spanID"]) for s in trace["spans"]}
                for trace_id, span_ids in wanted.items()
            )

        what = f"{sum(map(len, wanted.values()))} spans in Jaeger"
        found = poll(fetch, complete, timeout, 0.2, what)
        return {trace_id: trace for trace_id, trace in found.items() if trace is not None}


def trace_hex(jaeger_id: str) -> str:
    """Jaeger's v1 API drops leading zeros of a trace id; OTLP's hex has 32 digits."""
    return jaeger_id.rjust(32, "0")


def span_hex(jaeger_id: str) -> str:
    return jaeger_id.rjust(16, "0")


class Otelcol(ManagedProcess):
    """The OpenTelemetry Collector (.peers/bin/otelcol) with ``config`` (receivers, processors,
    exporters, pipelines, extensions) plus a health_check extension on a free port, which is
    what ``start`` waits on. Its own telemetry is off (no listener on :8888)."""

    def __init__(self, work_dir: Path, config: dict[str, Any]) -> None:
        health_port = free_ports(1)[0]
        config = {
            **config,
            "extensions": {**config.get("extensions", {}),
                           "health_check": {"endpoint": f"127.0.0.1:{health_port}"}},
        }
        service = config["service"] = dict(config["service"])
        service["extensions"] = [*service.get("extensions", []), "health_check"]
        service.setdefault("telemetry", {"metrics": {"level": "none"}, "logs": {"level": "info"}})
        work_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.config_path = work_dir / "otelcol.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        super().__init__(
            [peer_binary("otelcol"), "--config", f"file:{self.config_path}"],
            work_dir,
            "otelcol",
            ready_url=f"http://127.0.0.1:{health_port}/",
        )


class OtelcolPrometheus(Otelcol):
    """otelcol as OTLP receiver -> Prometheus exporter, in its default settings but for
    ``enable_open_metrics`` (OpenMetrics when the scraper asks for it).

    Send OTLP/HTTP to ``otlp_http_url`` + ``/v1/metrics``; scrape ``metrics_url``.
    """

    def __init__(self, work_dir: Path) -> None:
        grpc_port, http_port, prometheus_port = free_ports(3)
        self.otlp_http_url = f"http://127.0.0.1:{http_port}"
        self.metrics_url = f"http://127.0.0.1:{prometheus_port}/metrics"
        super().__init__(work_dir, {
            "receivers": {"otlp": {"protocols": {
                "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                "http": {"endpoint": f"127.0.0.1:{http_port}"},
            }}},
            "exporters": {"prometheus": {"endpoint": f"127.0.0.1:{prometheus_port}",
                                         "enable_open_metrics": True}},
            "service": {"pipelines": {
                "metrics": {"receivers": ["otlp"], "exporters": ["prometheus"]},
            }},
        })
