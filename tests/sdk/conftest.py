"""SDK test fixtures: a small real HTTP server that speaks the native API and OTLP/HTTP
metrics, and clients of it.

The server validates every body with the collector's own models and OTLP parser (so
whatever the SDK sends is proven acceptable), records it, and answers from a script of
statuses.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from pydantic import TypeAdapter, ValidationError

from flext_observability import FlextObservabilityConfig, FlextObservabilityMasterFactory
from flext_observability.models.native import Alert, HealthReport, Metric, Span
from flext_observability.models.otlp import parse_metrics
from helpers.procs import free_port

OTLP_METRICS = "/v1/metrics"
PROTOBUF = "application/x-protobuf"
_ADAPTERS = {
    f"/api/v1/{kind}": TypeAdapter(list[model])
    for kind, model in (
        ("metrics", Metric), ("spans", Span), ("alerts", Alert), ("health", HealthReport)
    )
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    items: list[dict[str, Any]]


@dataclass
class StubCollector:
    """`answers`: (status, headers) popped per request; 202 once it is empty."""

    url: str = ""
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def items(self, kind: str) -> list[dict[str, Any]]:
        """Every item accepted (202) on `POST /api/v1/<kind>`, in arrival order."""
        with self.lock:
            return [i for r in self.requests if r.path == f"/api/v1/{kind}" for i in r.items]

    def histograms(self) -> list[dict[str, Any]]:
        """Every histogram data point accepted on `POST /v1/metrics`, as
        {name, service, instance, labels, count, sum, bounds, counts, temporality}."""
        with self.lock:
            return [i for r in self.requests if r.path == OTLP_METRICS for i in r.items]


def _otlp_points(body: bytes) -> list[dict[str, Any]]:
    request = ExportMetricsServiceRequest.FromString(body)
    return [
        {
            "name": metric.name,
            "service": resource.get("service.name"),
            "instance": resource.get("service.instance.id", ""),
            "labels": {kv.key: kv.value.string_value for kv in point.attributes},
            "count": point.count, "sum": point.sum,
            "bounds": list(point.explicit_bounds), "counts": list(point.bucket_counts),
            "temporality": metric.histogram.aggregation_temporality,
            "start": point.start_time_unix_nano, "time": point.time_unix_nano,
        }
        for rm in request.resource_metrics
        for resource in [{kv.key: kv.value.string_value for kv in rm.resource.attributes}]
        for sm in rm.scope_metrics
        for metric in sm.metrics
        for point in metric.histogram.data_points
    ]


def _handler(stub: StubCollector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 1 << 16  # one write per answer (flushed by the server after each request)
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path == OTLP_METRICS:
                return self._otlp(body)
            adapter = _ADAPTERS.get(self.path)
            if adapter is None:
                return self._answer(404, {}, {"errors": [{"message": "no such route"}]})
            try:
                adapter.validate_json(body)
            except ValidationError as exc:
                stub.invalid.append(str(exc))
                return self._answer(422, {}, {"errors": [{"message": str(exc)}]})
            with stub.lock:
                status, headers = stub.answers.pop(0) if stub.answers else (202, {})
                if status == 202:
                    stub.requests.append(
                        Received(self.path, dict(self.headers), json.loads(body))
                    )
            self._answer(status, headers, {"accepted": 1} if status == 202 else {"errors": []})

        def _otlp(self, body: bytes) -> None:
            parsed = parse_metrics(body, json=False)
            if parsed.rejected or self.headers.get("content-type") != PROTOBUF:
                stub.invalid.append(parsed.message or self.headers.get("content-type", ""))
                return self._answer(400, {}, {"errors": [{"message": parsed.message}]})
            with stub.lock:
                status, headers = stub.answers.pop(0) if stub.answers else (200, {})
                if status == 202:
                    status = 200
                if status == 200:
                    stub.requests.append(Received(self.path, dict(self.headers),
                                                  _otlp_points(body)))
            self._answer(status, headers, {})

        def _answer(self, status: int, headers: dict[str, str], body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def stub_collector() -> Iterator[StubCollector]:
    stub = StubCollector()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield stub
    server.shutdown()
    server.server_close()
    assert not stub.invalid, stub.invalid


@pytest.fixture
def unused_endpoint() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def make_factory() -> Iterator[Any]:
    """`make_factory(endpoint, **config) -> FlextObservabilityMasterFactory`, closed at teardown.

    Defaults suit tests: service `sdk-test`, a worker that only wakes on `flush()`.
    """
    factories: list[FlextObservabilityMasterFactory] = []

    def make(endpoint: str, **overrides: Any) -> FlextObservabilityMasterFactory:
        settings = {"service_name": "sdk-test", "flush_interval": 60.0, **overrides}
        factory = FlextObservabilityMasterFactory(
            FlextObservabilityConfig(endpoint=endpoint, **settings)
        )
        factories.append(factory)
        return factory

    yield make
    for factory in factories:
        factory.close(timeout=1)
