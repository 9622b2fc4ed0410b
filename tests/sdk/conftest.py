"""SDK test fixtures: a small real HTTP server that speaks the native API, and clients of it.

The server validates every body with the collector's own models (so whatever the SDK
sends is proven acceptable), records it, and answers from a script of statuses.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from flext_observability import FlextObservabilityConfig, FlextObservabilityMasterFactory
from flext_observability.models.native import Alert, HealthReport, Metric, Span
from helpers.procs import free_port

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


def _handler(stub: StubCollector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 1 << 16  # one write per answer (flushed by the server after each request)
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
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
