import asyncio
import sqlite3
import threading
import time

import pytest

from flext_observability.pipeline.queue import (
    MemoryQueue,
    QueueClosed,
    QueueFull,
    Signal,
    SqliteQueue,
)


@pytest.fixture(params=["memory", "disk", "disk, inline commits"])
def make_queue(request, tmp_path):
    def make(max_items=1000, max_bytes=1_000_000, signal_share=1.0):
        if request.param == "memory":
            queue = MemoryQueue(max_items, max_bytes, 3, signal_share)
        else:
            queue = SqliteQueue(tmp_path / "q", max_items, max_bytes, 3, signal_share,
                                fsync=request.param == "disk")
        return queue

    return make


async def test_consumer_reads_its_signals_after_cursor_and_acks(make_queue):
    queue = make_queue()
    queue.register("prom", [Signal.METRICS])
    queue.register("jaeger", [Signal.SPANS])
    await queue.start()
    await queue.put(Signal.METRICS, "native-json", b"m1", 2)
    await queue.put(Signal.SPANS, "otlp-pb", b"s1", 5)
    await queue.put(Signal.METRICS, "native-json", b"m2", 3)

    records = await queue.read("prom", queue.cursor("prom"), 100)
    assert [r.payload for r in records] == [b"m1", b"m2"]
    assert queue.depth(Signal.METRICS) == 5
    await queue.ack("prom", records[-1].seq)
    assert queue.depth(Signal.METRICS) == 0
    assert queue.depth(Signal.SPANS) == 5
    assert await queue.read("prom", queue.cursor("prom"), 100) == []
    spans = await queue.read("jaeger", 0, 100)
    assert [(r.payload, r.items) for r in spans] == [(b"s1", 5)]
    await queue.shutdown()


async def test_read_stops_near_max_items(make_queue):
    queue = make_queue()
    queue.register("prom", [Signal.METRICS])
    await queue.start()
    for i in range(5):
        await queue.put(Signal.METRICS, "native-json", bytes([i]), 10)
    records = await queue.read("prom", 0, 25)
    assert len(records) == 3
    await queue.shutdown()


@pytest.mark.parametrize(("max_items", "max_bytes", "limit"), [
    (10, 1_000_000, "queue.max_items"),
    (1000, 10, "queue.max_bytes"),
])
async def test_full_queue_refuses_and_keeps_nothing(make_queue, max_items, max_bytes, limit):
    queue = make_queue(max_items=max_items, max_bytes=max_bytes)
    queue.register("prom", [Signal.METRICS])
    await queue.start()
    await queue.put(Signal.METRICS, "native-json", b"12345678", 8)
    with pytest.raises(QueueFull) as refused:
        await queue.put(Signal.METRICS, "native-json", b"12345678", 8)
    assert refused.value.limit == limit
    assert refused.value.retry_after == 3
    assert len(await queue.read("prom", 0, 100)) == 1
    await queue.ack("prom", 1)
    await queue.put(Signal.METRICS, "native-json", b"12345678", 8)
    await queue.shutdown()


async def test_closed_queue_refuses(make_queue):
    queue = make_queue()
    with pytest.raises(QueueClosed):
        await queue.put(Signal.METRICS, "native-json", b"x", 1)


async def test_wait_wakes_on_put(make_queue):
    queue = make_queue()
    queue.register("prom", [Signal.METRICS])
    await queue.start()
    waiter = asyncio.create_task(queue.wait("prom", at_most=30))
    await asyncio.sleep(0)
    await queue.put(Signal.METRICS, "native-json", b"x", 1)
    await asyncio.wait_for(waiter, 5)
    await queue.shutdown()


async def test_a_consumer_waiting_for_items_is_woken_once_they_are_there(make_queue):
    queue = make_queue()
    queue.register("otlp", [Signal.SPANS])
    await queue.start()
    waiter = asyncio.create_task(queue.wait("otlp", 30, items=10))
    await asyncio.sleep(0.01)  # waiting
    for _ in range(3):
        await queue.put(Signal.SPANS, "otlp-protobuf", b"x", 3)
    await asyncio.sleep(0.05)
    assert not waiter.done()  # 9 of the 10 items
    await queue.put(Signal.METRICS, "native-json", b"m", 5)
    await asyncio.sleep(0.05)
    assert not waiter.done()  # not its signal
    await queue.put(Signal.SPANS, "otlp-protobuf", b"x", 1)
    await asyncio.wait_for(waiter, 5)
    # A read starts the count again; one item wakes a plain wait.
    await queue.read("otlp", 0, 100)
    waiter = asyncio.create_task(queue.wait("otlp", 30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await queue.put(Signal.SPANS, "otlp-protobuf", b"x", 1)
    await asyncio.wait_for(waiter, 5)
    await queue.shutdown()


@pytest.mark.parametrize("fsync", [True, False])
async def test_disk_queue_redelivers_unacked_after_reopen(tmp_path, fsync):
    first = SqliteQueue(tmp_path, 1000, 1_000_000, 1, fsync=fsync)
    first.register("prom", [Signal.METRICS])
    await first.start()
    for i in range(4):
        await first.put(Signal.METRICS, "native-json", f"m{i}".encode(), 1)
    await first.ack("prom", 2)
    await first.shutdown()

    second = SqliteQueue(tmp_path, 1000, 1_000_000, 1, fsync=fsync)
    second.register("prom", [Signal.METRICS])
    await second.start()
    assert second.cursor("prom") == 2
    assert second.depth(Signal.METRICS) == 2
    records = await second.read("prom", second.cursor("prom"), 100)
    assert [r.payload for r in records] == [b"m2", b"m3"]
    seq = await second.put(Signal.METRICS, "native-json", b"m4", 1)
    assert seq == 5
    await second.shutdown()


@pytest.mark.parametrize(("fsync", "synchronous"), [(True, 2), (False, 1)])
async def test_fsync_chooses_whether_a_commit_waits_for_the_disk(tmp_path, fsync, synchronous):
    queue = SqliteQueue(tmp_path, 1000, 1_000_000, 1, fsync=fsync)
    await queue.start()
    # FULL (2) syncs the WAL at every commit; NORMAL (1) only at checkpoints.
    assert queue._write_conn.execute("PRAGMA synchronous").fetchone() == (synchronous,)
    await queue.shutdown()


@pytest.mark.parametrize("fsync", [True, False])
async def test_concurrent_puts_share_commits(tmp_path, monkeypatch, fsync):
    queue = SqliteQueue(tmp_path, 100_000, 100_000_000, 1, fsync=fsync)
    queue.register("prom", [Signal.METRICS])
    commits = []
    original = queue._commit

    def counting(batch):
        commits.append(len(batch.records))
        original(batch)

    monkeypatch.setattr(queue, "_commit", counting)
    await queue.start()
    await asyncio.gather(*(queue.put(Signal.METRICS, "native-json", b"x", 1) for _ in range(200)))
    assert sum(commits) == 200
    assert len(commits) < 50
    await queue.shutdown()


@pytest.mark.parametrize("fsync", [True, False])
async def test_shutdown_waits_for_the_commit_in_flight_and_what_came_during_it(tmp_path, fsync):
    queue = SqliteQueue(tmp_path, 100_000, 100_000_000, 1, fsync=fsync)
    queue.register("prom", [Signal.METRICS])
    await queue.start()
    puts = [asyncio.create_task(queue.put(Signal.METRICS, "native-json", bytes([i]), 1))
            for i in range(20)]
    await asyncio.sleep(0)  # every put is waiting for its commit: one in flight, the rest next
    await queue.shutdown()
    assert [put.done() and put.exception() for put in puts] == [None] * 20
    with pytest.raises(QueueClosed):
        await queue.ack("prom", 20)  # nothing is written once stopped (it would never be)
    await queue.shutdown()  # twice is fine

    again = SqliteQueue(tmp_path, 100_000, 100_000_000, 1, fsync=fsync)
    again.register("prom", [Signal.METRICS])
    await again.start()
    assert [r.payload for r in await again.read("prom", 0, 100)] == [bytes([i]) for i in range(20)]
    await again.shutdown()


@pytest.mark.parametrize("fsync", [True, False])
async def test_the_wal_is_checkpointed_and_restarted_as_commits_go_on(tmp_path, fsync):
    """SQLite's checkpoint runs in the commit that passes 1,000 pages of WAL (64 MiB), on
    the loop too: the rows reach the database file and the WAL restarts from its start."""
    queue = SqliteQueue(tmp_path, 100_000, 10**10, 1, fsync=fsync)
    queue.register("prom", [Signal.METRICS])
    await queue.start()
    loop_thread = threading.current_thread()
    on_loop = []
    commit = queue._commit
    queue._commit = lambda batch: (on_loop.append(threading.current_thread() is loop_thread),
                                   commit(batch))
    for _ in range(200):
        await queue.put(Signal.METRICS, "native-json", b"x" * 1_000_000, 1)
    assert set(on_loop) == {not fsync}  # inline without fsync, on the writer thread with it
    wal = queue.path.with_name(queue.path.name + "-wal")
    assert queue.path.stat().st_size > 100_000_000  # the rows are in the file itself
    assert wal.stat().st_size < 100_000_000  # 200 MB written, the WAL restarted
    await queue.shutdown()


async def test_one_signal_cannot_take_the_room_of_the_others(make_queue):
    queue = make_queue(max_items=100, signal_share=0.5)
    queue.register("jaeger", [Signal.SPANS])
    queue.register("prom", [Signal.METRICS])
    await queue.start()
    await queue.put(Signal.SPANS, "otlp-pb", b"s", 50)
    with pytest.raises(QueueFull) as refused:
        await queue.put(Signal.SPANS, "otlp-pb", b"s", 1)
    assert "signal_share" in refused.value.limit
    await queue.put(Signal.METRICS, "native-json", b"m", 50)
    await queue.shutdown()


async def test_a_checkpoint_writes_state_and_cursors_together_and_reopens(tmp_path):
    queue = SqliteQueue(tmp_path / "q", 1000, 1_000_000, 3)
    queue.register("prom", [Signal.METRICS])
    await queue.start()
    for payload in (b"m1", b"m2", b"m3"):
        await queue.put(Signal.METRICS, "native-json", payload, 1)
    await queue.checkpoint({"prom": 2}, {"prom": {b"a": b"1", b"b": b"2"}})
    await queue.checkpoint({"prom": 2}, {"prom": {b"a": None, b"c": b"3"}})
    assert queue.depth(Signal.METRICS) == 1
    await queue.shutdown()

    reopened = SqliteQueue(tmp_path / "q", 1000, 1_000_000, 3)
    reopened.register("prom", [Signal.METRICS])
    await reopened.start()
    assert sorted(await reopened.load_state("prom")) == [(b"b", b"2"), (b"c", b"3")]
    assert await reopened.load_state("other") == []
    assert reopened.cursor("prom") == 2
    left = await reopened.read("prom", reopened.cursor("prom"), 100)
    assert [r.payload for r in left] == [b"m3"]
    await reopened.shutdown()


async def test_the_memory_queue_keeps_no_state():
    queue = MemoryQueue(1000, 1_000_000, 3)
    queue.register("prom", [Signal.METRICS])
    await queue.start()
    await queue.put(Signal.METRICS, "native-json", b"m1", 1)
    await queue.checkpoint({"prom": 1}, {"prom": {b"a": b"1"}})
    assert queue.depth(Signal.METRICS) == 0
    assert await queue.load_state("prom") == []
    await queue.shutdown()


@pytest.mark.parametrize("fsync", [True, False])
async def test_a_failed_checkpoint_goes_whole_with_the_next_commit(tmp_path, fsync):
    """Even when the next commit is a put: its cursors, state and releases stay together."""
    queue = SqliteQueue(tmp_path / "q", 1000, 1_000_000, 3, fsync=fsync)
    queue.register("prom", [Signal.METRICS])
    await queue.start()
    await queue.put(Signal.METRICS, "native-json", b"m1", 1)
    blocker = sqlite3.connect(queue.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    began = time.monotonic()
    with pytest.raises(QueueClosed):
        await queue.checkpoint({"prom": 1}, {"prom": {b"a": b"1"}})
    # Inline (no fsync), the commit runs on the loop: it does not wait for the lock.
    assert fsync or time.monotonic() - began < 1
    assert not queue.writable()
    blocker.execute("ROLLBACK")
    blocker.close()
    await queue.put(Signal.METRICS, "native-json", b"m2", 1)
    assert queue.writable()
    await queue.shutdown()

    reopened = SqliteQueue(tmp_path / "q", 1000, 1_000_000, 3, fsync=fsync)
    reopened.register("prom", [Signal.METRICS])
    await reopened.start()
    assert await reopened.load_state("prom") == [(b"a", b"1")]
    assert reopened.cursor("prom") == 1
    left = await reopened.read("prom", reopened.cursor("prom"), 100)
    assert [r.payload for r in left] == [b"m2"]
    await reopened.shutdown()


async def test_staged_rows_are_published_by_the_next_checkpoint_or_forgotten(tmp_path):
    queue = SqliteQueue(tmp_path / "q", 1000, 1_000_000, 3)
    queue.register("prom", [Signal.METRICS])
    await queue.start()
    for payload in (b"m1", b"m2"):
        await queue.put(Signal.METRICS, "native-json", payload, 1)
    await queue.checkpoint({"prom": 1}, {"prom": {b"a": b"1", b"b": b"1"}})
    await queue.stage({"prom": {b"a": b"2", b"b": None, b"c": b"2"}})
    await queue.stage({"prom": {b"c": b"3", b"d": b"3"}})
    await queue.shutdown()

    # Staged, never published (a crash mid-checkpoint): the state and cursor of before.
    reopened = SqliteQueue(tmp_path / "q", 1000, 1_000_000, 3)
    reopened.register("prom", [Signal.METRICS])
    await reopened.start()
    assert sorted(await reopened.load_state("prom")) == [(b"a", b"1"), (b"b", b"1")]
    assert reopened.cursor("prom") == 1
    await reopened.stage({"prom": {b"a": b"2", b"b": None, b"c": b"2"}})
    assert sorted(await reopened.load_state("prom")) == [(b"a", b"1"), (b"b", b"1")]
    # Published with the checkpoint's cursor; its own rows win over the staged ones.
    await reopened.checkpoint({"prom": 2}, {"prom": {b"c": b"4"}})
    assert sorted(await reopened.load_state("prom")) == [(b"a", b"2"), (b"c", b"4")]
    await reopened.shutdown()

    again = SqliteQueue(tmp_path / "q", 1000, 1_000_000, 3)
    again.register("prom", [Signal.METRICS])
    await again.start()
    assert sorted(await again.load_state("prom")) == [(b"a", b"2"), (b"c", b"4")]
    assert again.cursor("prom") == 2
    await again.shutdown()
async def test_consumers_registered_and_unregistered_while_running(make_queue):
    """A reload's exporters: registered again, a consumer keeps its cursor; unregistered,
    the rows only it held are released; registered anew, it goes on from its cursor."""
    queue = make_queue()
    queue.register("jaeger", [Signal.SPANS])
    queue.register("extra", [Signal.SPANS])
    await queue.start()
    first = await queue.put(Signal.SPANS, "otlp-pb", b"s1", 1)
    await queue.ack("jaeger", first)
    await queue.ack("extra", first)
    second = await queue.put(Signal.SPANS, "otlp-pb", b"s2", 1)
    await queue.ack("jaeger", second)

    mark = queue.registrations
    queue.register("jaeger", [Signal.SPANS])
    assert queue.registered_since(mark) == {"jaeger"}
    assert queue.cursor("jaeger") == second
    assert queue.depth(Signal.SPANS) == 1  # s2, not acknowledged by extra

    await queue.unregister("extra")
    assert queue.depth(Signal.SPANS) == 0
    third = await queue.put(Signal.SPANS, "otlp-pb", b"s3", 1)
    queue.register("extra", [Signal.SPANS])
    assert queue.cursor("extra") == first
    assert [r.seq for r in await queue.read("extra", queue.cursor("extra"), 10)] == [third]
    await queue.shutdown()


async def test_a_stored_cursor_of_an_unconfigured_consumer_is_kept(tmp_path):
    """Removed before a restart and added back after it: the consumer goes on from its
    stored cursor."""
    queue = SqliteQueue(tmp_path / "q", 100, 1_000_000, 3)
    queue.register("extra", [Signal.SPANS])
    await queue.start()
    seq = await queue.put(Signal.SPANS, "otlp-pb", b"s1", 1)
    await queue.ack("extra", seq)
    await queue.shutdown()

    reopened = SqliteQueue(tmp_path / "q", 100, 1_000_000, 3)
    await reopened.start()
    reopened.register("extra", [Signal.SPANS])
    assert reopened.cursor("extra") == seq
    await reopened.shutdown()
