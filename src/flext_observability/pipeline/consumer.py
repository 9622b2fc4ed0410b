"""Drives an in-process sink from the queue: read after the cursor, handle, acknowledge.

A sink whose state exists nowhere else (`StatefulSink`) is not acknowledged per batch:
`Checkpoints` writes, every `CHECKPOINT_INTERVAL` seconds and at shutdown, the state
its sinks changed and the cursors of their consumers in one queue transaction. Between
checkpoints the applied rows stay in the queue; after a crash they are applied again to
the state of the last checkpoint, so each is counted exactly once. A large checkpoint (a
burst of new series) is written SLICE_ROWS rows at a time, so that it is never held in
memory at once (see `Checkpoints.checkpoint`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from flext_observability.pipeline.queue import Queue, QueueClosed, Record, StateChanges
from flext_observability.signals import Signal
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL = 1.0
# A checkpoint comes before its interval once the records applied since the last one hold
# this share of what one signal may store (they stay stored until then): a fast stream of
# metrics must not fill the queue between two checkpoints.
EARLY_SHARE = 0.25
SLICE_ROWS = 5_000
# Slices of one sink per checkpoint, at most: past them (a sink changing faster than its
# slices are written), the rest is taken at once with the cursors.
MAX_SLICES = 200


class StatefulSink(Protocol):
    """State kept as opaque rows: `restore()` once before the first record, `changes()`
    (the rows changed since the last call, None for a deleted one; at most `limit`, the
    others left for the next call) at each checkpoint."""

    def restore(self, rows: list[tuple[bytes, bytes]]) -> None: ...

    def changes(self, limit: int | None = None) -> StateChanges: ...


class Checkpoints:
    """The state of some sinks and the cursors of some consumers, written together."""

    def __init__(
        self, queue: Queue, telemetry: SelfTelemetry, interval: float = CHECKPOINT_INTERVAL
    ) -> None:
        self._queue = queue
        self._telemetry = telemetry
        self._interval = interval
        self._sinks: dict[str, StatefulSink] = {}
        self._applied: dict[str, int] = {}
        self._saved: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._unsaved = 0  # items applied since the cursors of the last checkpoint
        self._early = max(1, int(queue.signal_max_items * EARLY_SHARE))
        self._task: asyncio.Task[None] | None = None
        self.failing = False

    def add(self, name: str, sink: StatefulSink) -> None:
        """A sink whose rows are stored under `name` (before `start()`)."""
        self._sinks[name] = sink

    def follow(self, consumer: str) -> None:
        """A consumer acknowledged by the checkpoints; from its stored cursor on."""
        self._applied[consumer] = self._saved[consumer] = self._queue.cursor(consumer)

    def applied(self, consumer: str, seq: int, items: int) -> None:
        """The consumer's records up to seq (`items` more) are in its sinks' state."""
        self._applied[consumer] = seq
        self._unsaved += items
        if self._unsaved >= self._early and not self.failing:
            self._wake.set()

    async def start(self) -> None:
        """Restore every sink from its stored rows (after the queue started, before the
        consumers), then checkpoint periodically."""
        for name, sink in self._sinks.items():
            rows = await self._queue.load_state(name)
            sink.restore(rows)
            if rows:
                log.info("restored %d state rows of %s", len(rows), name)
        self._task = asyncio.create_task(self._loop(), name="checkpoints")

    async def shutdown(self) -> None:
        """A last checkpoint (after the consumers stopped), then stop."""
        if self._task is None:
            return
        self._stop.set()
        self._wake.set()
        await self._task
        self._task = None

    async def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
            await self.checkpoint()

    async def checkpoint(self) -> bool:
        """Write what changed and the cursors it reflects; False (counted; the queue keeps
        the changes for its next commit) when the queue could not.

        While a sink has full slices of SLICE_ROWS changed rows, each is taken and staged
        (`Queue.stage`: written, not yet part of the state), the consumers going on
        meanwhile; a row that changes again after it was staged is changed, so taken
        again. The rest of every sink is taken at one instant on the loop, with the cursors
        it matches, and written with them in the transaction that publishes what was
        staged: the state stored is the state at that instant. (While storage fails, all
        is taken at once, so that a retried write never publishes a slice of a later
        checkpoint with earlier cursors.)"""
        carried: dict[str, StateChanges] = {}
        staged = False
        try:
            for name, sink in self._sinks.items():
                for _ in range(0 if self.failing else MAX_SLICES):
                    taken = sink.changes(SLICE_ROWS)
                    if len(taken) < SLICE_ROWS:
                        carried[name] = taken
                        break
                    await self._queue.stage({name: taken})
                    staged = True
            changes: dict[str, StateChanges] = {}
            for name, sink in self._sinks.items():
                taken = {**carried.get(name, {}), **sink.changes()}
                if taken:
                    changes[name] = taken
            cursors = dict(self._applied)
            self._unsaved = 0
            if not changes and not staged and cursors == self._saved and not self.failing:
                return True
            await self._queue.checkpoint(cursors, changes)
        except QueueClosed as exc:
            self._telemetry.state_write_failures.inc()
            if not self.failing:
                log.error("cannot write the held state (retried every %.1fs): %s",
                          self._interval, exc)
            self.failing = True
            return False
        self._saved = cursors
        if self.failing:
            log.info("the held state is written again")
        self.failing = False
        return True


class LocalConsumer:
    """For sinks that handle records synchronously in memory (the Prometheus store, health).

    With `checkpoints`, handled records are acknowledged by the next checkpoint instead of
    at once."""

    def __init__(
        self,
        queue: Queue,
        name: str,
        signals: Iterable[Signal],
        handle: Callable[[list[Record]], None],
        telemetry: SelfTelemetry,
        batch_items: int = 50_000,
        idle_wait: float = 1.0,
        checkpoints: Checkpoints | None = None,
    ) -> None:
        self.name = name
        self._queue = queue
        self._handle = handle
        self._telemetry = telemetry
        self._batch_items = batch_items
        self._idle_wait = idle_wait
        self._checkpoints = checkpoints
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        queue.register(name, signals)

    async def start(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.follow(self.name)
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.name}")

    async def shutdown(self, deadline: float | None = None) -> None:
        """Handle what is already queued, then stop; safe to call twice or before start.
        The records are handled in memory, with no downstream to wait for: all of them,
        whatever the `deadline`."""
        if self._task is None:
            return
        self._stopping = True
        self._queue.wake(self.name)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def state(self) -> str:
        """What /readyz shows for this consumer."""
        if self._checkpoints is not None and self._checkpoints.failing:
            return "state_write_failing"
        return "running"

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
            if self._checkpoints is None:
                await self._queue.ack(self.name, cursor)
            else:
                self._checkpoints.applied(self.name, cursor, sum(r.items for r in records))
                await asyncio.sleep(0)  # nothing else awaited: let the checkpoints run
