"""Drives an in-process sink from the queue: read after the cursor, handle, acknowledge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from flext_observability.pipeline.queue import Queue, Record, Signal
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)


class LocalConsumer:
    """For sinks that handle records synchronously in memory (the Prometheus store, health)."""

    def __init__(
        self,
        queue: Queue,
        name: str,
        signals: Iterable[Signal],
        handle: Callable[[list[Record]], None],
        telemetry: SelfTelemetry,
        batch_items: int = 50_000,
        idle_wait: float = 1.0,
    ) -> None:
        self.name = name
        self._queue = queue
        self._handle = handle
        self._telemetry = telemetry
        self._batch_items = batch_items
        self._idle_wait = idle_wait
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        queue.register(name, signals)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.name}")

    async def shutdown(self) -> None:
        """Handle what is already queued, then stop; safe to call twice or before start."""
        if self._task is None:
            return
        self._stopping = True
        self._queue.wake(self.name)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        cursor = self._queue.cursor(self.name)
        while True:
            records = await self._queue.read(self.name, cursor, self._batch_items)
            if not records:
                if self._stopping:
                    return
                await self._queue.wait(self.name, self._idle_wait)
                continue
            try:
                self._handle(records)
            except Exception:
                lost = sum(r.items for r in records)
                self._telemetry.dropped.labels(self.name, "handler_error").inc(lost)
                log.exception(
                    "consumer %s failed on records %d..%d; %d items dropped",
                    self.name, records[0].seq, records[-1].seq, lost,
                )
            cursor = records[-1].seq
            await self._queue.ack(self.name, cursor)
