"""A real OTLP trace receiver for tests: no Jaeger runs here, so this stands in for one.

OTLP/gRPC is the opentelemetry-proto generated ``TraceService`` on a grpcio server;
OTLP/HTTP is ``POST /v1/traces`` (protobuf, optionally gzip) on an ``http.server``
thread. Every accepted ``ExportTraceServiceRequest`` is kept and can be read back as
spans. The sink can be told to fail (gRPC UNAVAILABLE / HTTP 503), to answer slowly,
and it can be stopped and started again on the same ports to play an outage.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from .procs import free_port, poll


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as the Python value it carries (arrays as lists)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def attributes(pairs: list[KeyValue]) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs}


@dataclass(frozen=True)
class ReceivedSpan:
    resource: dict[str, Any]
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]


def count_spans(request: ExportTraceServiceRequest) -> int:
    return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)


class OtlpSink:
    """``grpc_endpoint`` / ``http_endpoint`` are URLs for ``exporters.jaeger.endpoint``.

    With ``keep=False`` only ``span_count`` is kept (for benchmarks).
    """

    def __init__(self, keep: bool = True) -> None:
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.grpc_endpoint = f"http://127.0.0.1:{self.grpc_port}"
        self.http_endpoint = f"http://127.0.0.1:{self.http_port}"
        self.keep = keep
        self.delay = 0.0
        self.requests: list[ExportTraceServiceRequest] = []
        self.http_headers: list[dict[str, str]] = []
        self.span_count = 0
        self.refused_calls = 0
        self._failing = False
        self._lock = threading.Lock()
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()

    # --- behaviour -------------------------------------------------------------------

    def fail(self) -> None:
        """Answer every export with gRPC UNAVAILABLE / HTTP 503 until ``recover()``."""
        self._failing = True

    def recover(self) -> None:
        self._failing = False

    def _accept(self, request: ExportTraceServiceRequest) -> bool:
        """Record the request; False when the sink is failing (nothing recorded)."""
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            if self._failing:
                self.refused_calls += 1
                return False
            self.span_count += count_spans(request)
            if self.keep:
                self.requests.append(request)
        return True

    # --- reading back ----------------------------------------------------------------

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            requests = list(self.requests)
        return [
            ReceivedSpan(
                attributes(resource_spans.resource.attributes),
                span.trace_id.hex(),
                span.span_id.hex(),
                span.parent_span_id.hex(),
                span.name,
                attributes(span.attributes),
                [(e.name, attributes(e.attributes)) for e in span.events],
            )
            for request in requests
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]

    def span_ids(self) -> set[str]:
        return {span.span_id for span in self.spans()}

    def wait_for_span_ids(self, wanted: set[str], timeout: float = 20) -> set[str]:
        """Poll until every span id in ``wanted`` arrived; return the ids received."""
        return poll(self.span_ids, lambda got: wanted <= got, timeout, 0.1,
                    f"{len(wanted)} spans at the sink")

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> OtlpSink:
        """Listen on the sink's (same) ports; safe to call again after ``stop()``."""
        sink = self

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                if not sink._accept(request):
                    context.abort(grpc.StatusCode.UNAVAILABLE, "sink told to fail")
                return ExportTraceServiceResponse()

        server = grpc.server(
            futures.ThreadPoolExecutor(8),
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024),
                     ("grpc.so_reuseport", 0)],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), server)
        server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        server.start()
        self._grpc = server

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with sink._lock:
                    sink._connections.add(self.connection)

            def finish(self):
                with sink._lock:
                    sink._connections.discard(self.connection)
                super().finish()

            def log_message(self, format, *args):
                pass

            def _answer(self, status, body=b"", headers=()):
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces":
                    return self._answer(404)
                if self.headers.get("Content-Type") != "application/x-protobuf":
                    return self._answer(415)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with sink._lock:
                    sink.http_headers.append(dict(self.headers))
                if not sink._accept(ExportTraceServiceRequest.FromString(body)):
                    return self._answer(503, headers=[("Retry-After", "1")])
                return self._answer(200, ExportTraceServiceResponse().SerializeToString())

        self._http = ThreadingHTTPServer(("127.0.0.1", self.http_port), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close both listeners (clients see connection refused); safe twice."""
        if self._grpc is not None:
            self._grpc.stop(None).wait()
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
            with self._lock:
                connections, self._connections = self._connections, set()
            for connection in connections:  # keep-alive clients are cut off too
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
