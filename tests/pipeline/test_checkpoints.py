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


async def started(queue: SqliteQueue) -> tuple[Checkpoints, Rows]:
    """The queue started with one metrics consumer, "prom", whose sink is checkpointed once
    an hour (unless something brings a checkpoint sooner)."""
    queue.register("prom", [Signal.METRICS])
    await queue.start()
    checkpoints = Checkpoints(queue, SelfTelemetry(CollectorRegistry(), queue), interval=3600)
    sink = Rows()
    checkpoints.add("prom", sink)
    checkpoints.follow("prom")
    await checkpoints.start()
    return checkpoints, sink


async def test_a_large_checkpoint_is_written_in_slices_as_of_one_instant(tmp_path):
    queue = SqliteQueue(tmp_path / "q", 10**6, 10**9, 3)
    checkpoints, sink = await started(queue)
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
            checkpoints.applied("prom", applied, 1)

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


async def test_records_holding_a_quarter_of_a_signals_room_are_checkpointed_at_once(tmp_path):
    """They stay stored until a checkpoint: a fast stream must not fill the queue between
    two checkpoints (here an hour apart)."""
    queue = SqliteQueue(tmp_path / "q", 100, 10**9, 3, signal_share=0.8)  # 80 for metrics
    checkpoints, _ = await started(queue)
    await queue.put(Signal.METRICS, "native-json", b"m", 10)
    await queue.put(Signal.METRICS, "native-json", b"m", 10)
    checkpoints.applied("prom", 1, 10)
    await asyncio.sleep(0.2)
    assert queue.cursor("prom") == 0  # 10 items: under a quarter of 80
    checkpoints.applied("prom", 2, 10)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if queue.cursor("prom") == 2:
            break
    assert queue.cursor("prom") == 2
    assert queue.depth(Signal.METRICS) == 0
    await checkpoints.shutdown()
    await queue.shutdown()
