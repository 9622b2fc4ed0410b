"""An ingest worker: the HTTP receivers in a process of their own (`server.workers`).

It shares the collector's listening socket and does the per-item work of a request there
(reading, decompressing, authenticating, validating), then hands the validated payload
to the collector process (`ipc.RemoteIntake`), which admits it, makes it durable and
answers; only then does the worker answer 202. Every other route (`/metrics`, `/readyz`,
`GET /api/v1/*`, `/docs`) is passed to the collector process over its unix socket.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry

from flext_observability.builder import add_ingest_routes, build_ingest
from flext_observability.config import Config
from flext_observability.logs import configure_logging
from flext_observability.receivers.pushgateway.path import PREFIX as PUSH_PREFIX
from flext_observability.receivers.toolkit import Refusal, read_limited
from flext_observability.serving import Server, http_options, tune_process
from flext_observability.signals import Signal
from flext_observability.tasks import cancel
from flext_observability.telemetry import Counts, SelfTelemetry
from flext_observability.tls import uvicorn_ssl_options
from flext_observability.workers.ipc import QueueView, RemoteIntake

log = logging.getLogger(__name__)

# How often a worker sends its self-telemetry to the collector (and before every passed
# request, so that a scrape through a worker sees that worker's counts).
COUNTS_INTERVAL = 0.25
COLLECTOR = httpx.URL("http://collector")
_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade",
     "date", "server"}
)


class _CountsSender:
    """Sends what the worker's counters gained since the last send."""

    def __init__(self, telemetry: SelfTelemetry, intake: RemoteIntake) -> None:
        self._telemetry = telemetry
        self._intake = intake
        self._sent: Counts = {}

    def flush(self) -> None:
        now = self._telemetry.counts()
        deltas = [
            (name, dict(labels), value - self._sent.get((name, labels), 0.0))
            for (name, labels), value in now.items()
            if value != self._sent.get((name, labels), 0.0)
        ]
        self._sent = now
        self._intake.send_counts(deltas)
        self._intake.send_refusals(self._telemetry.refusals.take())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(COUNTS_INTERVAL)
            self.flush()


def create_edge_app(
    config: Config, channel: socket.socket, collector_uds: str, on_lost: Callable[[], None]
) -> FastAPI:
    """The worker's app: the ingest routes, and every other route passed on."""
    telemetry = SelfTelemetry(CollectorRegistry(auto_describe=False), None,
                              config.server.refusals_kept)
    queue = QueueView(config.queue.max_items, config.queue.max_bytes,
                      config.queue.retry_after_seconds)
    intake = RemoteIntake(channel, queue, on_lost)
    # The same receiving side as the collector process's (`builder`), over the remote intake.
    ingest = build_ingest(config, intake.put, telemetry, queue)
    memory = ingest.memory
    counts = _CountsSender(telemetry, intake)
    client = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=collector_uds),
        timeout=60,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await intake.start()
        await memory.start()
        sender = asyncio.create_task(counts.run(), name="counts-sender")
        try:
            yield
        finally:
            await cancel(sender)
            counts.flush()
            await memory.shutdown()
            await client.aclose()
            await intake.shutdown()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.telemetry = telemetry
    add_ingest_routes(app, ingest, config, telemetry)

    async def pass_on(request: Request) -> Response:
        # The collector's own routes take no body (every POST route is served here), so
        # none is read or passed on: a body sent to any other path is never held.
        counts.flush()
        headers = [(k, v) for k, v in request.headers.items() if k not in _HOP_HEADERS]
        # The path as it came, so that the collector routes it as one process would
        # (`//api/v1/x` through an URL reference would lose its first segment).
        query = request.scope["query_string"]
        target = COLLECTOR.copy_with(
            raw_path=request.scope["raw_path"] + (b"?" + query if query else b"")
        )
        body = None
        if request.url.path.startswith(PUSH_PREFIX) and request.method != "DELETE":
            # Pushes (`receivers.pushgateway`) are served there with their body, read here
            # within server.max_body_bytes and passed on decompressed.
            try:
                body = await read_limited(
                    request, config.server.max_body_bytes, config.server.read_timeout
                )
            except Refusal as refusal:
                telemetry.refused.labels(Signal.METRICS.value, refusal.reason).inc()
                message = refusal.errors[0].message if refusal.errors else refusal.reason
                return Response(message + "\n", refusal.status, refusal.headers,
                                media_type="text/plain")
            headers = [(k, v) for k, v in headers if k != "content-encoding"]
        try:
            answer = await client.request(request.method, target, headers=headers, content=body)
        except httpx.HTTPError as exc:
            return Response(f"collector process unavailable: {exc}\n", 503,
                            {"Retry-After": "5"}, media_type="text/plain")
        kept = {k: v for k, v in answer.headers.items()
                if k not in _HOP_HEADERS and k != "content-encoding"}
        return Response(answer.content, answer.status_code, kept)

    app.add_api_route(
        "/{path:path}", pass_on, include_in_schema=False,
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    )
    return app


def run_worker(
    config: Config, listener: socket.socket, channel: socket.socket, collector_uds: str,
    log_format: str, log_level: str,
) -> None:
    """A worker process's main: serve on the shared listener until told to stop, or until
    the collector process is gone."""
    configure_logging(log_format, config.server.log_level or log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per passed request
    tune_process()
    server: Server | None = None

    def lost() -> None:
        if server is not None:
            server.should_exit = True

    app = create_edge_app(config, channel, collector_uds, lost)
    server = Server(uvicorn.Config(
        app, **http_options(config.server, app.state.telemetry),
        **uvicorn_ssl_options(config.server.tls),
    ))
    server.run(sockets=[listener])
