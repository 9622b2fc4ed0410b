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
    from flext_observability.app import Collector

log = logging.getLogger(__name__)

# Seconds a worker gets to drain after SIGTERM before it is killed.
STOP_GRACE = 30.0
# Seconds between replacing a worker that died and the next attempt.
RESTART_DELAY = 1.0


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

    async def start(self, collector: Collector) -> None:
        server = IntakeServer(collector.intake, collector.telemetry, collector.memory,
                              self._config.limits.retry_after_seconds)
        for index in range(self._config.server.workers):
            self._tasks.append(
                asyncio.create_task(self._keep(index, server), name=f"ingest-worker-{index}")
            )
        log.info("started %d ingest workers", self._config.server.workers)

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

    async def _keep(self, index: int, server: IntakeServer) -> None:
        """Run worker `index`; start a new one whenever it exits before shutdown."""
        while not self._stopping:
            process, channel = self._spawn(index)
            self._processes.append(process)
            try:
                await server.serve(channel)
            finally:
                channel.close()
            await asyncio.get_running_loop().run_in_executor(None, process.join)
            self._processes.remove(process)
            if not self._stopping:
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
