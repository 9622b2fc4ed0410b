"""Checkpoints of a large change: written in slices, the stored state that of one instant."""

import asyncio
import sqlite3

from prometheus_client import CollectorRegistry

from flext_observability.pipeline.consumer import SLICE_ROWS, Checkpoints
from flext_observability.pipeline.queue import Signal, SqliteQueue, StateChanges
from flext_observability.telemetry import SelfTelemetry


class Rows:
    """A sink of numbered rows; `bump()` changes some, as a consumer applying records does."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.dirty: set[bytes] = set()
        self.taken: list[int] = []  # rows handed out per call

    def set(self, key: bytes, value: bytes) -> None:
        self.values[key] = value
        self.dirty.add(key)

    def restore(self, rows: list[tuple[bytes, bytes]]) -> None:
        self.values = dict(rows)

    def changes(self, limit: int | None = None) -> StateChanges:
        rows: StateChanges = {}
        while self.dirty and len(rows) != limit:
            key = self.dirty.pop()
            rows[key] = self.values.get(key)
        self.taken.append(len(rows))
        return rows


async def test_a_large_checkpoint_is_written_in_slices_as_of_one_instant(tmp_path):
    queue = SqliteQueue(tmp_path / "q", 10**6, 10**9, 3)
    queue.register("prom", [Signal.METRICS])
    await queue.start()
    checkpoints = Checkpoints(queue, SelfTelemetry(CollectorRegistry(), queue), interval=3600)
    sink = Rows()
    checkpoints.add("prom", sink)
    checkpoints.follow("prom")
    await checkpoints.start()
    total = SLICE_ROWS * 5 // 2
    for index in range(total):
        sink.set(b"%d" % index, b"first")
    applied = 0

    async def consume() -> None:
        """Meanwhile, records are applied: rows already taken change again, and new ones."""
        nonlocal applied
        while True:
            await asyncio.sleep(0.001)
            applied += 1
            sink.set(b"%d" % (applied % total), b"again %d" % applied)
            sink.set(b"new %d" % applied, b"new")
            checkpoints.applied("prom", applied)

    final: dict[str, object] = {}
    take = sink.changes

    def changes(limit: int | None = None) -> StateChanges:
        if limit is None:  # the final take, with the cursors: the instant of the state
            final.update(values=dict(sink.values), cursor=applied)
        return take(limit)

    sink.changes = changes  # type: ignore[method-assign]
    consumer = asyncio.create_task(consume())
    assert await checkpoints.checkpoint()
    consumer.cancel()
    assert max(sink.taken[:-1]) <= SLICE_ROWS < total  # never all the rows at once
    assert len(sink.taken) > 3
    assert dict(await queue.load_state("prom")) == final["values"]
    with sqlite3.connect(queue.path) as db:
        assert db.execute("SELECT seq FROM cursors").fetchall() == [(final["cursor"],)]
    await checkpoints.shutdown()
    await queue.shutdown()

    reopened = SqliteQueue(tmp_path / "q", 10**6, 10**9, 3)
    reopened.register("prom", [Signal.METRICS])
    await reopened.start()
    assert reopened.cursor("prom") == applied
    assert dict(await reopened.load_state("prom")) == sink.values
    await reopened.shutdown()
