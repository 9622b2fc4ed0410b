"""Serving HTTP in a process, the collector's or an ingest worker's: the process tuning,
uvicorn's options and the `Server` that starts the collector before it serves."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import signal
import socket
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

import uvicorn

from flext_observability.receivers.config import ServerConfig
from flext_observability.receivers.connections import (
    ConnectionLimits,
    connection_bound,
    guarded_protocol,
    raise_open_files_limit,
)
from flext_observability.startup import StartupError
from flext_observability.telemetry import SelfTelemetry

if TYPE_CHECKING:
    from flext_observability.collector import Collector
    from flext_observability.reload.reloader import Reloader

log = logging.getLogger("flext_observability")


class Companion(Protocol):
    """What runs beside the collector's server (the ingest workers' pool): started once the
    collector serves, stopped before it stops."""

    async def start(self, collector: Collector) -> None: ...

    async def shutdown(self) -> None: ...


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A request allocates thousands of short-lived containers: collect the young generation
# less often and the old ones rarely (`python -m bench native`: 1.45x with the freeze).
GC_THRESHOLDS = (50_000, 20, 100)
# glibc's mallopt parameter, and how many malloc arenas the process may have.
M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def tune_process() -> None:
    """Process-wide settings, before any thread starts: the GC thresholds above, and at most
    MALLOC_ARENAS malloc arenas. glibc gives each thread that allocates an arena of its own,
    and an arena keeps what was freed in it: the queue's writer and reader, decompression
    and the state checkpoints are such threads (tests/receivers/test_overload.py, the same
    overload: RSS at most 238 MiB with one arena per thread, 153 MiB with two). Without
    glibc (no `mallopt`), only the GC thresholds."""
    gc.set_threshold(*GC_THRESHOLDS)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, MALLOC_ARENAS)


class Server(uvicorn.Server):
    """Starts the collector before it serves, stops it after; SIGTERM/SIGINT drain and stop,
    and the process then exits 0, not by the signal. Nothing says "started" before every
    listener (HTTP, gRPC, the queue's lock) is held. An app with ingest routes is served
    through their front (`app.state.ingest_front`, receivers/dispatch.py)."""

    def __init__(
        self,
        config: uvicorn.Config,
        collector: Collector | None = None,
        pool: Companion | None = None,
        reloader: Reloader | None = None,
    ) -> None:
        state = getattr(config.app, "state", None)
        config.app = getattr(state, "ingest_front", config.app)
        super().__init__(config)
        self.collector = collector
        self.pool = pool
        self.reloader = reloader
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reloads: set[asyncio.Future[Any]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        collector = self.collector
        if collector is not None:
            try:
                await collector.start()
            except StartupError as exc:
                log.error("cannot start: %s", exc)
                await collector.shutdown()
                self.should_exit = True
                return
        await super().startup(sockets)
        if not self.started:
            if collector is not None:
                await collector.shutdown()
            return
        # What exists once the app runs (modules, routes, models) lives as long as the
        # process: keep it out of every later garbage collection.
        gc.collect()
        gc.freeze()
        if collector is None:
            return
        if self.reloader is not None and self.config.ssl is not None:
            self.reloader.ssl_contexts.append(self.config.ssl)
        if self.pool is not None:
            await self.pool.start(collector)
        server = collector.config.server
        listening = "".join(f" {name}={server.host}:{listener.port}"
                            for name, listener in collector.listeners.items())
        log.info("collector started http=%s:%d%s queue=%s", server.host, server.http_port,
                 listening, collector.config.queue.kind)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # The workers drain first: their requests in flight still need this process.
        if self.pool is not None:
            await self.pool.shutdown()
        await super().shutdown(sockets)
        if self.collector is not None:
            await self.collector.shutdown()
            log.info("collector stopped")

    def handle_reload(self, sig: int, frame: FrameType | None) -> None:
        """SIGHUP: reload the config file (its outcome is logged)."""
        if self.reloader is not None and self.started and self._loop is not None:
            self._loop.call_soon_threadsafe(self._start_reload)

    def _start_reload(self) -> None:
        if self.reloader is not None:
            task = asyncio.ensure_future(self.reloader.reload())
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self.handle_reload)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def http_options(server: ServerConfig, telemetry: SelfTelemetry) -> dict[str, Any]:
    """uvicorn's options for the HTTP listener: the connection limits, the open-files
    limit raised (a process-wide setting, done here as each process starts serving)."""
    limits = ConnectionLimits(
        connection_bound(server.max_connections, raise_open_files_limit()),
        server.max_header_bytes, server.max_headers, server.header_timeout,
    )
    return {
        "http": guarded_protocol(limits, telemetry.refused_connections),
        "timeout_keep_alive": server.keep_alive_timeout,
        "log_config": None, "access_log": False, "lifespan": "on",
        "timeout_graceful_shutdown": 30,
    }
