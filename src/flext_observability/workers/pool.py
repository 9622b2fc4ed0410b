"""The collector process's ingest workers: started, replaced when one dies, stopped first.

Processes are started with `spawn` (no state of this process is copied: threads, gRPC,
SQLite), each given the shared listening socket and its end of a socket pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import socket
import time
from typing import TYPE_CHECKING, Any

from flext_observability.config import Config
from flext_observability.workers.ipc import IntakeServer

if TYPE_CHECKING:
    from flext_observability.collector import Collector

log = logging.getLogger(__name__)

# Seconds a worker gets to drain after SIGTERM before it is killed.
STOP_GRACE = 30.0
# Seconds between replacing a worker that died and the next attempt.
RESTART_DELAY = 1.0
# Seconds the new workers of a reload get to start before the old ones are kept instead.
RELOAD_START_TIMEOUT = 60.0


class WorkerPool:
    def __init__(
        self, config: Config, listener: socket.socket, collector_uds: str,
        log_format: str, log_level: str,
    ) -> None:
        self._config = config
        self._listener = listener
        self._uds = collector_uds
        self._log = (log_format, log_level)
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        # Workers of an older generation are not replaced when they exit (a reload).
        self._generation = 0
        self._server: IntakeServer | None = None

    async def start(self, collector: Collector) -> None:
        self._server = IntakeServer(collector.intake, collector.telemetry, collector.memory,
                                    self._config.limits.retry_after_seconds)
        self._start_generation()
        log.info("started %d ingest workers", self._config.server.workers)

    def _start_generation(self) -> list[asyncio.Event]:
        """A worker per slot with the current config; the events are set as each is ready."""
        if self._server is None:
            raise RuntimeError("the worker pool is not started")
        events = []
        for index in range(self._config.server.workers):
            ready = asyncio.Event()
            events.append(ready)
            self._tasks.append(asyncio.create_task(
                self._keep(index, self._server, self._generation, ready),
                name=f"ingest-worker-{index}",
            ))
        return events

    async def reload(self, config: Config) -> None:
        """Serve with `config`: new workers start on the same listener, and once they are
        ready the old ones stop as on SIGTERM (they finish their requests); the listener
        stays open throughout. If the new ones do not start, the old ones keep serving."""
        old = list(self._processes)
        previous = self._config
        self._config = config
        self._generation += 1
        events = self._start_generation()
        try:
            async with asyncio.timeout(RELOAD_START_TIMEOUT):
                for ready in events:
                    await ready.wait()
        except TimeoutError:
            log.error("the reloaded ingest workers did not start in %.0fs; the old ones go on",
                      RELOAD_START_TIMEOUT)
            self._config = previous
            self._generation += 1  # the new ones are not replaced when they exit
            for process in list(self._processes):
                if process not in old:
                    process.terminate()
            return
        for process in old:
            process.terminate()
        log.info("ingest workers replaced with the reloaded config")

    def _spawn(self, index: int) -> tuple[Any, socket.socket]:
        from flext_observability.workers.edge import run_worker

        ours, theirs = socket.socketpair()
        process = self._context.Process(
            target=run_worker, name=f"flext-ingest-{index}",
            args=(self._config, self._listener, theirs, self._uds, *self._log),
        )
        process.start()
        theirs.close()
        return process, ours

    async def _keep(
        self, index: int, server: IntakeServer, generation: int, ready: asyncio.Event
    ) -> None:
        """Run worker `index`; start a new one whenever it exits before shutdown (unless a
        reload has replaced this generation)."""
        while not self._stopping and generation == self._generation:
            process, channel = self._spawn(index)
            self._processes.append(process)
            try:
                await server.serve(channel, ready.set)
            finally:
                channel.close()
            await asyncio.get_running_loop().run_in_executor(None, process.join)
            self._processes.remove(process)
            if not self._stopping and generation == self._generation:
                log.error("ingest worker %d exited with %s; starting another",
                          index, process.exitcode)
                await asyncio.sleep(RESTART_DELAY)

    async def shutdown(self) -> None:
        """SIGTERM every worker (they finish their requests, which still reach this process),
        wait for them, kill those past STOP_GRACE."""
        self._stopping = True
        for process in self._processes:
            process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for process in list(self._processes):
            remaining = max(0.0, deadline - time.monotonic())
            await asyncio.get_running_loop().run_in_executor(None, process.join, remaining)
            if process.is_alive():
                log.warning("ingest worker %s did not stop in %.0fs; killing it",
                            process.name, STOP_GRACE)
                process.kill()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
