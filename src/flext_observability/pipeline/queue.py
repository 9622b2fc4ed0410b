"""The durable queue between receivers and exporters.

One row per accepted request (`seq, signal, encoding, payload, items, bytes`). Receivers
`put()` and get their answer only after the row is committed; concurrent puts share one
transaction (group commit). Each consumer reads the rows of its signals after its own
cursor and `ack()`s what it has handled; rows every interested consumer has acknowledged
are deleted. Limits are checked against what is stored: over them, `put()` raises
`QueueFull` and nothing is kept.

A consumer whose handling builds state that exists nowhere else (the Prometheus store's
totals, the held alerts and health) acknowledges through `checkpoint()` instead: the changed
state rows (`StateChanges`, opaque bytes keyed by bytes, per consumer) and the cursors they
reflect are written in one transaction, and `load_state()` gives them back at start. Rows
after a stored cursor are handed out again after a restart, so each is applied exactly once
to the state that is restored. A large checkpoint may first `stage()` its rows in slices
(each its own transaction, kept apart from the state): the `checkpoint()` that follows
publishes them in its transaction, with its cursors, and a restart forgets rows staged and
not published, so the state never gets ahead of its cursors. The memory queue keeps no
state (it is memory-only by choice); a log-based queue (Kafka) stores its partition offsets
as the cursors beside the same state rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import sqlite3
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from flext_observability.signals import Signal
from flext_observability.tasks import Worker


@dataclass(frozen=True, slots=True)
class Record:
    """One accepted request. `decoded` is the receiver's parsed form of the payload, kept
    only in memory (never stored) so a consumer in this process need not parse it again."""

    seq: int
    signal: Signal
    encoding: str
    payload: bytes
    items: int
    decoded: Any = field(default=None, compare=False, repr=False)


# A consumer's state changes: the new value of each changed key, None for a deleted key.
StateChanges = dict[bytes, bytes | None]


class QueueFull(Exception):
    """The queue is at a limit; the request must be retried later. Nothing was stored."""

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(f"queue is full ({limit} reached); retry after {retry_after}s")
        self.limit = limit
        self.retry_after = retry_after


class QueueClosed(Exception):
    """The queue is shutting down or its storage failed; the request must be retried.
    (`reason` and `retry_after`: how the refusal is counted and answered.)"""

    def __init__(self, message: str, reason: str = "unavailable", retry_after: int = 5) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(slots=True)
class _Consumer:
    signals: frozenset[Signal]
    cursor: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # Items put since the consumer last read, and how many of them wake it (`wait`).
    unread: int = 0
    wanted: int = 1


@dataclass(slots=True)
class _Stored:
    """In-memory index of stored rows per signal: (seq, items, bytes), oldest first."""

    rows: deque[tuple[int, int, int]] = field(default_factory=deque)
    items: int = 0
    bytes: int = 0


class Queue(ABC):
    """Shared bookkeeping: limits, consumers, cursors, counts; storage is the subclass's.

    Besides the totals, one signal may hold at most `signal_share` of each limit, so the
    backlog of a stalled exporter never leaves the other signals without room.
    """

    # Whether consumers read a put record under the seq `put()` gave it.
    reads_back_seq = True

    def __init__(
        self, max_items: int, max_bytes: int, retry_after: int, signal_share: float = 1.0
    ) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.retry_after = retry_after
        self.signal_max_items = max(1, int(max_items * signal_share))
        self.signal_max_bytes = max(1, int(max_bytes * signal_share))
        self._consumers: dict[str, _Consumer] = {}
        # Stored cursors of consumers not registered now (removed, or not configured).
        self._retired: dict[str, int] = {}
        self._registered: list[str] = []
        self._stored: dict[Signal, _Stored] = {signal: _Stored() for signal in Signal}
        self._reserved_items = 0
        self._reserved_bytes = 0
        self._next_seq = 1
        self._closed = True

    def register(self, consumer: str, signals: Iterable[Signal]) -> None:
        """Declare a consumer; it reads only rows of these signals. Before `start()`, or
        while running (a reloaded exporter): a consumer registered
        again keeps its cursor, one registered anew goes on from its stored cursor."""
        self._registered.append(consumer)
        known = self._consumers.get(consumer)
        if known is not None:
            known.signals = frozenset(signals)
            return
        self._consumers[consumer] = _Consumer(
            frozenset(signals), self._retired.pop(consumer, 0))

    @property
    def registrations(self) -> int:
        """How many `register` calls so far (a mark for `registered_since`)."""
        return len(self._registered)

    def registered_since(self, mark: int) -> set[str]:
        """The consumers registered (again) after `mark`."""
        return set(self._registered[mark:])

    async def unregister(self, consumer: str) -> None:
        """Forget a running consumer (a removed exporter): the rows only it still held are
        released; its stored cursor stays for when it is registered again."""
        state = self._consumers.pop(consumer, None)
        if state is None:
            return
        self._retired[consumer] = state.cursor
        state.wakeup.set()
        await self._save(self._releasable(), {}, {})

    def consumed(self, signal: Signal) -> bool:
        return any(signal in c.signals for c in self._consumers.values())

    def depth(self, signal: Signal) -> int:
        return self._stored[signal].items

    def depth_bytes(self, signal: Signal) -> int:
        return self._stored[signal].bytes

    @property
    def total_items(self) -> int:
        return sum(s.items for s in self._stored.values())

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self._stored.values())

    @property
    def accepting(self) -> bool:
        return not self._closed

    @property
    def next_seq(self) -> int:
        """The sequence number the next stored request gets."""
        return self._next_seq

    def cursor(self, consumer: str) -> int:
        return self._consumers[consumer].cursor

    def signals_of(self, consumer: str) -> frozenset[Signal]:
        """The signals a registered consumer reads (KeyError for another name)."""
        return self._consumers[consumer].signals

    async def put(
        self, signal: Signal, encoding: str, payload: bytes, items: int, decoded: Any = None
    ) -> int:
        """Store one accepted request; returns once it is durable. Raises QueueFull/Closed."""
        if self._closed:
            raise QueueClosed("the queue is not accepting data")
        size = len(payload)
        if self.total_items + self._reserved_items + items > self.max_items:
            raise QueueFull("queue.max_items", self.retry_after)
        if self.total_bytes + self._reserved_bytes + size > self.max_bytes:
            raise QueueFull("queue.max_bytes", self.retry_after)
        stored = self._stored[signal]
        if stored.items + items > self.signal_max_items:
            raise QueueFull(f"queue.signal_share of queue.max_items for {signal}", self.retry_after)
        if stored.bytes + size > self.signal_max_bytes:
            raise QueueFull(f"queue.signal_share of queue.max_bytes for {signal}", self.retry_after)
        seq = self._next_seq
        self._next_seq += 1
        self._reserved_items += items
        self._reserved_bytes += size
        try:
            await self._store(Record(seq, signal, encoding, payload, items, decoded))
        finally:
            self._reserved_items -= items
            self._reserved_bytes -= size
        stored = self._stored[signal]
        stored.rows.append((seq, items, size))
        stored.items += items
        stored.bytes += size
        for consumer in self._consumers.values():
            if signal in consumer.signals:
                consumer.unread += items
                if consumer.unread >= consumer.wanted:
                    consumer.wakeup.set()
        return seq

    async def read(self, consumer: str, after: int, max_items: int) -> list[Record]:
        """Rows of the consumer's signals with seq > after, up to about max_items items."""
        state = self._consumers[consumer]
        state.unread = 0
        return await self._read(state.signals, after, max_items)

    def wake(self, consumer: str) -> None:
        self._consumers[consumer].wakeup.set()

    async def wait(self, consumer: str, at_most: float, items: int = 1) -> None:
        """Sleep until puts for this consumer's signals bring `items` items since its last
        read (an exporter filling a batch is not woken by each request), or `at_most`
        seconds, or `wake()`."""
        state = self._consumers[consumer]
        state.wanted = max(1, items)
        if state.unread >= state.wanted:
            state.wakeup.set()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(at_most):
                    await state.wakeup.wait()
        finally:
            state.wanted = 1
            state.wakeup.clear()

    async def ack(self, consumer: str, seq: int) -> None:
        """The consumer has handled every row up to seq; durable on return."""
        state = self._consumers[consumer]
        if seq <= state.cursor:
            return
        state.cursor = seq
        await self._save(self._releasable(), {consumer: seq}, {})

    async def checkpoint(
        self, cursors: dict[str, int], changes: dict[str, StateChanges]
    ) -> None:
        """Acknowledge up to each consumer's seq and write the consumers' state changes, all
        in one transaction: durable on return. Raises QueueClosed when storage failed."""
        for consumer, seq in cursors.items():
            state = self._consumers[consumer]
            state.cursor = max(state.cursor, seq)
        await self._save(self._releasable(), cursors, changes, publish=True)

    async def stage(self, changes: dict[str, StateChanges]) -> None:
        """Write state rows of a checkpoint in progress apart from the state (`load_state()`
        does not see them) until the next `checkpoint()` publishes them, before its own
        changes; durable on return. Raises QueueClosed when storage failed."""
        await self._save({}, {}, {}, staged=changes)

    async def load_state(self, consumer: str) -> list[tuple[bytes, bytes]]:
        """The consumer's state rows as of its stored cursor (after `start()`)."""
        return []

    def caught_up(self, consumer: str) -> bool:
        """Whether a state consumer's state is as new as the log it follows. Here always:
        the state restored is this queue's own, a checkpoint at most behind its rows."""
        return True

    def _releasable(self) -> dict[Signal, int]:
        """Per signal, the highest seq that every interested consumer has acknowledged."""
        floors: dict[Signal, int] = {}
        for state in self._consumers.values():
            for signal in state.signals:
                floors[signal] = min(floors.get(signal, state.cursor), state.cursor)
        releasable = {}
        for signal, floor in floors.items():
            stored = self._stored[signal]
            while stored.rows and stored.rows[0][0] <= floor:
                _, items, size = stored.rows.popleft()
                stored.items -= items
                stored.bytes -= size
                releasable[signal] = floor
        return releasable

    def _restore(self, rows: Iterable[tuple[int, str, int, int]], cursors: dict[str, int]) -> None:
        for seq, signal, items, size in rows:
            stored = self._stored[Signal(signal)]
            stored.rows.append((seq, items, size))
            stored.items += items
            stored.bytes += size
            self._next_seq = max(self._next_seq, seq + 1)
        for name, seq in cursors.items():
            if name in self._consumers:
                self._consumers[name].cursor = seq
            else:
                self._retired[name] = seq
            self._next_seq = max(self._next_seq, seq + 1)
        self._releasable()

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def shutdown(self) -> None: ...

    @abstractmethod
    def writable(self) -> bool: ...

    @abstractmethod
    async def _store(self, record: Record) -> None: ...

    @abstractmethod
    async def _read(self, signals: frozenset[Signal], after: int, max_items: int) -> list[Record]:
        ...

    @abstractmethod
    async def _save(
        self,
        release: dict[Signal, int],
        cursors: dict[str, int],
        changes: dict[str, StateChanges],
        *,
        staged: dict[str, StateChanges] | None = None,
        publish: bool = False,
    ) -> None: ...


class MemoryQueue(Queue):
    """The same contract without durability: for tests and for users who opt out. State
    changes given to `checkpoint()` are not kept: the state lives only in its consumer."""

    def __init__(
        self, max_items: int, max_bytes: int, retry_after: int, signal_share: float = 1.0
    ) -> None:
        super().__init__(max_items, max_bytes, retry_after, signal_share)
        self._records: deque[Record] = deque()

    async def start(self) -> None:
        self._closed = False

    async def shutdown(self) -> None:
        self._closed = True

    def writable(self) -> bool:
        return not self._closed

    async def _store(self, record: Record) -> None:
        self._records.append(record)

    async def _read(self, signals: frozenset[Signal], after: int, max_items: int) -> list[Record]:
        batch: list[Record] = []
        count = 0
        for record in self._records:
            if record.seq > after and record.signal in signals:
                batch.append(record)
                count += record.items
                if count >= max_items:
                    break
        return batch

    async def _save(
        self,
        release: dict[Signal, int],
        cursors: dict[str, int],
        changes: dict[str, StateChanges],
        *,
        staged: dict[str, StateChanges] | None = None,
        publish: bool = False,
    ) -> None:
        if release:
            self._records = deque(
                r for r in self._records if r.seq > release.get(r.signal, 0)
            )


_DECODED_WEIGHT = 8


def write_state(conn: sqlite3.Connection, changes: dict[str, StateChanges]) -> None:
    """Each consumer's changed rows into a `state (consumer, key, value)` table, inside the
    caller's transaction: a row set or replaced, a None deleted."""
    for consumer, rows in changes.items():
        conn.executemany(
            "INSERT INTO state VALUES (?, ?, ?) "
            "ON CONFLICT (consumer, key) DO UPDATE SET value = excluded.value",
            [(consumer, k, v) for k, v in rows.items() if v is not None],
        )
        conn.executemany(
            "DELETE FROM state WHERE consumer = ? AND key = ?",
            [(consumer, k) for k, v in rows.items() if v is None],
        )


def _weight(record: Record) -> int:
    size = len(record.payload)
    return size if record.decoded is None else size * _DECODED_WEIGHT


_PAGE_SIZE = 65536
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    signal TEXT NOT NULL,
    encoding TEXT NOT NULL,
    payload BLOB NOT NULL,
    items INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_signal ON records (signal, seq);
CREATE TABLE IF NOT EXISTS cursors (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (
    consumer TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (consumer, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS staged (
    consumer TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB,
    PRIMARY KEY (consumer, key)
) WITHOUT ROWID;
"""


@dataclass(slots=True)
class _Pending:
    records: list[Record] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    release: dict[Signal, int] = field(default_factory=dict)
    state: dict[str, StateChanges] = field(default_factory=dict)
    staged: dict[str, StateChanges] = field(default_factory=dict)
    publish: bool = False  # the staged rows go into the state (before `state`)
    done: list[asyncio.Future[None]] = field(default_factory=list)

    def keep(self, failed: _Pending) -> None:
        """What a failed commit acknowledged, released and changed, under what came since:
        the next commit writes it (the cursors, state and releases stay together)."""
        for consumer, seq in failed.cursors.items():
            self.cursors[consumer] = max(seq, self.cursors.get(consumer, 0))
        for signal, floor in failed.release.items():
            self.release[signal] = max(floor, self.release.get(signal, 0))
        for consumer, rows in failed.state.items():
            self.state[consumer] = {**rows, **self.state.get(consumer, {})}
        for consumer, rows in failed.staged.items():
            self.staged[consumer] = {**rows, **self.staged.get(consumer, {})}
        self.publish = self.publish or failed.publish


class SqliteQueue(Queue):
    """SQLite in WAL mode. Everything pending is committed in one transaction: by the
    writer thread (`fsync`: the loop goes on while the disk syncs), or on the event loop at
    the end of its turn (no fsync: a copy to the OS, cheaper than the hand-over).

    Records written by this process stay in memory too (up to about `fresh_bytes`), so
    consumers that keep up read them without going back to the database. A record with a
    decoded form weighs `_DECODED_WEIGHT` times its payload.
    """

    def __init__(
        self,
        directory: Path,
        max_items: int,
        max_bytes: int,
        retry_after: int,
        signal_share: float = 1.0,
        *,
        fsync: bool = True,
        fresh_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        super().__init__(max_items, max_bytes, retry_after, signal_share)
        self._fresh: dict[int, Record] = {}
        self._fresh_bytes = 0
        self._fresh_limit = fresh_bytes
        self.path = directory / "queue.sqlite3"
        # WAL with synchronous=NORMAL writes each commit to the OS and syncs at checkpoints.
        self._synchronous = "FULL" if fsync else "NORMAL"
        # Without an fsync a commit is a copy to the OS: made on the event loop, it costs
        # less than the hand-over to a thread and back (see README "Performance").
        self._inline = not fsync
        self._writer = Worker("queue-writer")
        self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix="queue-reader")
        self._pending = _Pending()
        self._committing = False  # a commit is under way (on the thread, or due on the loop)
        self._drained: asyncio.Future[None] | None = None  # set when none is, at shutdown
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._failed: BaseException | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # Payloads are tens of kilobytes: large pages keep a row to a few overflow pages
        # (a new database only; `python -m bench native`: 1.3x fewer CPU-seconds a commit).
        conn.execute(f"PRAGMA page_size={_PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        return conn

    def _open(self) -> tuple[list[tuple[int, str, int, int]], dict[str, int]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_conn = self._connect()
        self._write_conn.executescript(_SCHEMA)
        # Staged by a checkpoint that did not complete: its cursors were not stored.
        self._write_conn.execute("DELETE FROM staged")
        if self._inline:
            # Commits on the loop: a write lock held by another process fails one at once
            # (its requests refused with 503, the next commit tries again) instead of
            # stopping the loop for sqlite3's 5 s.
            self._write_conn.execute("PRAGMA busy_timeout=0")
        self._read_conn = self._connect()
        rows = self._write_conn.execute(
            "SELECT seq, signal, items, bytes FROM records ORDER BY seq"
        ).fetchall()
        cursors = dict(self._write_conn.execute("SELECT consumer, seq FROM cursors").fetchall())
        return rows, cursors

    async def start(self) -> None:
        self._writer.start()
        rows, cursors = await self._writer.run(self._open)
        self._restore(rows, cursors)
        self._closed = False

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._committing:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
            self._drained = None
        await self._writer.run(self._close)
        await self._writer.stop()
        self._reader_pool.shutdown()

    def _close(self) -> None:
        for conn in (self._read_conn, self._write_conn):
            if conn is not None:
                conn.close()

    def writable(self) -> bool:
        return not self._closed and self._failed is None

    async def _submit(self) -> None:
        """Wait until what is pending is committed: in a commit begun now if none is under
        way, else in the next, with whatever else comes meanwhile (group commit)."""
        if self._closed:
            raise QueueClosed("the queue is stopped")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.done.append(future)
        if not self._committing:
            self._commit_soon()
        await future

    def _commit_soon(self) -> None:
        """What is pending goes to the writer thread now, or (inline) into a commit at the
        end of this turn of the loop."""
        self._committing = True
        if self._inline:
            asyncio.get_running_loop().call_soon(self._commit_inline)
            return
        batch, self._pending = self._pending, _Pending()
        self._writer.post(partial(self._commit, batch), partial(self._committed, batch))

    def _commit_inline(self) -> None:
        """Commits what is pending on the loop (`queue.fsync: false`), once the requests of
        this turn of the loop have added theirs. SQLite's own checkpoint of the WAL runs in
        the commit that passes its 1,000 pages, as on the writer thread: a checkpoint made
        beside the commits (another connection, another thread) never caught up with them
        at the peak, and the WAL grew past gigabytes."""
        batch, self._pending = self._pending, _Pending()
        try:
            self._commit(batch)
        except Exception as error:  # as on the writer thread: refused, never left waiting
            self._committed(batch, None, error)
            return
        self._committed(batch, None, None)

    async def _store(self, record: Record) -> None:
        self._pending.records.append(record)
        await self._submit()

    async def _save(
        self,
        release: dict[Signal, int],
        cursors: dict[str, int],
        changes: dict[str, StateChanges],
        *,
        staged: dict[str, StateChanges] | None = None,
        publish: bool = False,
    ) -> None:
        pending = self._pending
        for consumer, seq in cursors.items():
            pending.cursors[consumer] = max(seq, pending.cursors.get(consumer, 0))
        for signal, floor in release.items():
            pending.release[signal] = max(floor, pending.release.get(signal, 0))
        for consumer, rows in changes.items():
            pending.state.setdefault(consumer, {}).update(rows)
        for consumer, rows in (staged or {}).items():
            pending.staged.setdefault(consumer, {}).update(rows)
        pending.publish = pending.publish or publish
        await self._submit()

    async def load_state(self, consumer: str) -> list[tuple[bytes, bytes]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_pool, self._select_state, consumer)

    def _select_state(self, consumer: str) -> list[tuple[bytes, bytes]]:
        conn = self._read_conn
        # Narrows the type: set by open(), the executors stop before close() clears it.
        assert conn is not None  # nosec B101
        return conn.execute(
            "SELECT key, value FROM state WHERE consumer = ?", (consumer,)
        ).fetchall()

    def _committed(self, batch: _Pending, _: None, error: Exception | None) -> None:
        """On the loop, once `batch` is committed or failed to be."""
        self._committing = False
        if error is None:
            self._failed = None
            self._remember(batch)
            for future in batch.done:
                if not future.done():
                    future.set_result(None)
        else:
            self._failed = error
            self._pending.keep(batch)
            for future in batch.done:
                if not future.done():
                    future.set_exception(QueueClosed(f"queue storage failed: {error}"))
        if self._pending.done:
            self._commit_soon()
        elif self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _remember(self, batch: _Pending) -> None:
        for record in batch.records:
            self._fresh[record.seq] = record
            self._fresh_bytes += _weight(record)
        for signal, floor in batch.release.items():
            for seq in [s for s, r in self._fresh.items() if r.signal is signal and s <= floor]:
                self._fresh_bytes -= _weight(self._fresh.pop(seq))
        while self._fresh_bytes > self._fresh_limit:
            self._fresh_bytes -= _weight(self._fresh.pop(next(iter(self._fresh))))

    def _commit(self, batch: _Pending) -> None:
        conn = self._write_conn
        # Narrows the type: set by open(), the executors stop before close() clears it.
        assert conn is not None  # nosec B101
        conn.execute("BEGIN")
        try:
            if batch.records:
                conn.executemany(
                    "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (r.seq, r.signal.value, r.encoding, r.payload, r.items, len(r.payload))
                        for r in batch.records
                    ],
                )
            if batch.cursors:
                conn.executemany(
                    "INSERT INTO cursors VALUES (?, ?) "
                    "ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq",
                    list(batch.cursors.items()),
                )
            for signal, floor in batch.release.items():
                conn.execute(
                    "DELETE FROM records WHERE signal = ? AND seq <= ?", (signal.value, floor)
                )
            for consumer, rows in batch.staged.items():
                conn.executemany(
                    "INSERT INTO staged VALUES (?, ?, ?) "
                    "ON CONFLICT (consumer, key) DO UPDATE SET value = excluded.value",
                    [(consumer, k, v) for k, v in rows.items()],
                )
            if batch.publish:
                conn.execute(
                    "INSERT INTO state SELECT consumer, key, value FROM staged "
                    "WHERE value IS NOT NULL "
                    "ON CONFLICT (consumer, key) DO UPDATE SET value = excluded.value"
                )
                conn.execute(
                    "DELETE FROM state WHERE (consumer, key) IN "
                    "(SELECT consumer, key FROM staged WHERE value IS NULL)"
                )
                conn.execute("DELETE FROM staged")
            write_state(conn, batch.state)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def _read(self, signals: frozenset[Signal], after: int, max_items: int) -> list[Record]:
        batch: list[Record] = []
        count = 0
        for seq, items, _ in heapq.merge(*(self._stored[s].rows for s in signals)):
            if seq <= after:
                continue
            record = self._fresh.get(seq)
            if record is None:
                break
            batch.append(record)
            count += items
            if count >= max_items:
                return batch
        else:
            return batch
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._reader_pool, self._select, sorted(s.value for s in signals), after, max_items
        )

    def _select(self, signals: list[str], after: int, max_items: int) -> list[Record]:
        conn = self._read_conn
        # Narrows the type: set by open(), the executors stop before close() clears it.
        assert conn is not None  # nosec B101
        marks = ",".join("?" * len(signals))
        # Only "?" placeholders are formatted in; the signals are bound as parameters.
        cursor = conn.execute(
            "SELECT seq, signal, encoding, payload, items FROM records "
            f"WHERE seq > ? AND signal IN ({marks}) ORDER BY seq",  # nosec B608
            (after, *signals),
        )
        batch: list[Record] = []
        count = 0
        for seq, signal, encoding, payload, items in cursor:
            batch.append(Record(seq, Signal(signal), encoding, payload, items))
            count += items
            if count >= max_items:
                break
        cursor.close()
        return batch
