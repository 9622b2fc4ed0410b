"""The queue on Apache Kafka (`queue.kind: kafka`, CONTRACT §9).

`put()` produces the request to its signal's topic with `acks=all` from an idempotent
producer and returns only once every broker in sync acknowledged it; a broker error or no
acknowledgement within `produce_timeout` raises QueueClosed (503 with Retry-After).

Consumers read topics, not rows. Records get a local, increasing seq as they arrive; the
queue remembers each one's partition and offset, so a cursor (a seq) stands for partition
offsets:
- span and log consumers (the exporters) are one consumer group per exporter across every
  instance (`<group_prefix>-<exporter>`): `ack()` commits the group's offsets, only after
  the downstream accepted; a dead instance's partitions move to the others.
- metric, alert and health consumers (the held state) read every partition in every
  instance (manual assignment): `checkpoint()` writes their state rows and the partition
  offsets those rows reflect in one SQLite transaction under `queue.path`, and a restart
  resumes from those offsets, so each record is applied exactly once to the restored state.

Consumers come and go while running (a reload's exporters): one registered while running
joins its group at its first read and, where its group has no committed offsets (its local
store none), starts with the records written from START_MARGIN before it was registered
(what was accepted before it was configured is not for it); one unregistered leaves its
group (its partitions move to the group's other members, from the offsets committed); a
consumer whose reader starts again from its cursor (a replaced exporter) reads again what
was handed out and not acknowledged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flext_observability.models.wire import unpack_digest
from flext_observability.pipeline.intake import METRICS_DIGEST, NATIVE_JSON, OTLP_PROTOBUF
from flext_observability.pipeline.kafka.config import KafkaConfig
from flext_observability.pipeline.kafka.partition import (
    Parts,
    partition_of,
    split_digest,
    split_otlp_metrics,
    split_spans,
)
from flext_observability.pipeline.queue import (
    Queue,
    QueueClosed,
    QueueFull,
    Record,
    StateChanges,
    write_state,
)
from flext_observability.signals import Signal
from flext_observability.startup import StartupError

log = logging.getLogger(__name__)

ENCODING_HEADER = "flext-encoding"
ITEMS_HEADER = "flext-items"
UNAVAILABLE = "kafka_unavailable"
# Records a consumer holds in memory before its reader thread waits.
BUFFER_ITEMS = 200_000
LAG_INTERVAL = 2.0
PROBE_INTERVAL = 1.0
# How long a revoked partition's records in flight get to be delivered before it moves.
HANDOVER_SECONDS = 5.0
SHARED_SIGNALS = frozenset({Signal.SPANS, Signal.LOGS})
# The state consumers whose catching up with the log is followed (`caught_up`).
FOLLOWED_SIGNALS = frozenset({Signal.ALERTS, Signal.HEALTH})
# A consumer registered while running starts this long before it was registered (clocks
# of the instances may differ a little): a record produced as it was configured is read.
START_MARGIN = 2.0
TopicKey = tuple[str, int]


class KafkaMetrics:
    """Self-metrics of the queue on Kafka."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge(
            "flext_collector_kafka_connected",
            "1 while the brokers answer this instance's producer, else 0", registry=registry,
        )
        self.produce_latency = Histogram(
            "flext_collector_kafka_produce_latency_seconds",
            "Time from produce to the acks=all acknowledgement of a request",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.produce_failures = Counter(
            "flext_collector_kafka_produce_failures",
            "Requests Kafka did not acknowledge (answered 503), by reason",
            ["reason"], registry=registry,
        )
        self.lag = Gauge(
            "flext_collector_kafka_consumer_lag",
            "Records of a partition not yet handled by a consumer of this instance",
            ["group", "topic", "partition"], registry=registry,
        )
        self.commit_failures = Counter(
            "flext_collector_kafka_commit_failures",
            "Offset commits the brokers refused (the records are delivered again)",
            ["group"], registry=registry,
        )
        self.possible_duplicates = Counter(
            "flext_collector_kafka_possible_duplicates",
            "Records in flight when their partition moved to another instance (it may "
            "deliver them again), by group", ["group"], registry=registry,
        )
        self.rebalances = Counter(
            "flext_collector_kafka_rebalances",
            "Partitions revoked from this instance's exporter consumers, by group",
            ["group"], registry=registry,
        )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS offsets (
    consumer TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, PRIMARY KEY (consumer, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    consumer TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (consumer, key)
) WITHOUT ROWID;
"""


class _LocalStore:
    """The held state's rows and the partition offsets they reflect (one SQLite file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def offsets(self, consumer: str) -> dict[TopicKey, int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT topic, partition, next_offset FROM offsets WHERE consumer = ?",
                (consumer,),
            ).fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def state(self, consumer: str) -> list[tuple[bytes, bytes]]:
        with self._lock:
            return self._conn.execute(
                "SELECT key, value FROM state WHERE consumer = ?", (consumer,)
            ).fetchall()

    def save(
        self, offsets: dict[str, dict[TopicKey, int]], changes: dict[str, StateChanges]
    ) -> None:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")
            try:
                for consumer, positions in offsets.items():
                    conn.executemany(
                        "INSERT INTO offsets VALUES (?, ?, ?, ?) ON CONFLICT (consumer, topic, "
                        "partition) DO UPDATE SET next_offset = excluded.next_offset",
                        [(consumer, t, p, o) for (t, p), o in positions.items()],
                    )
                write_state(conn, changes)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()


@dataclass(slots=True)
class _Reader:
    """One consumer of the queue: its Kafka consumer, read by its own thread."""

    name: str
    group: str
    shared: bool
    topics: list[str]
    consumer: Consumer
    buffer: deque[Record] = field(default_factory=deque)
    buffered_items: int = 0
    # seq -> (topic, partition, offset) of every record read and not yet acknowledged
    origin: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    # partition -> the next offset to handle (what is acknowledged)
    done: dict[TopicKey, int] = field(default_factory=dict)
    revoked: set[TopicKey] = field(default_factory=set)
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    # Records handed out by read() and not acknowledged yet, and the highest seq handed out.
    lent: dict[int, Record] = field(default_factory=dict)
    handed: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    # A state consumer's partitions -> their end when it started (what it must apply to
    # be as new as the log).
    ends: dict[TopicKey, int] = field(default_factory=dict)
    # Offset commits for the reader thread (a Kafka consumer is used by one thread only),
    # each with the future it settles.
    commits: SimpleQueue[tuple[list[TopicPartition], asyncio.Future[None]]] = field(
        default_factory=SimpleQueue
    )


def _header(message: Message, name: str) -> bytes | None:
    for header in message.headers() or ():
        key, value = header[0], header[1]
        if key == name and isinstance(value, bytes):
            return value
    return None


def _count_otlp(signal: Signal, payload: bytes) -> int:
    """Items of an OTLP request written by another producer (no items header)."""
    if signal is Signal.SPANS:
        spans = ExportTraceServiceRequest.FromString(payload)
        return sum(len(s.spans) for r in spans.resource_spans for s in r.scope_spans)
    if signal is Signal.LOGS:
        logs = ExportLogsServiceRequest.FromString(payload)
        return sum(len(s.log_records) for r in logs.resource_logs for s in r.scope_logs)
    metrics = ExportMetricsServiceRequest.FromString(payload)
    points = 0
    for resource in metrics.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                points += len(getattr(metric, kind).data_points) if kind else 0
    return points


def start_offsets(
    consumer: Consumer, parts: list[TopicPartition], since: float, timeout: float
) -> dict[TopicKey, int]:
    """Where a consumer reading what was written from `since` (Unix seconds) starts in each
    partition: the first record written since then, else the end. The ends are read first:
    a record written while the lookups run is at or past the end read before them, so it
    is never skipped."""
    ends = {(p.topic, p.partition): consumer.get_watermark_offsets(
        TopicPartition(p.topic, p.partition), timeout)[1] for p in parts}
    found = consumer.offsets_for_times(
        [TopicPartition(p.topic, p.partition, int(since * 1000)) for p in parts], timeout
    )
    return {(p.topic, p.partition): p.offset if p.offset >= 0 else ends[(p.topic, p.partition)]
            for p in found}


class KafkaQueue(Queue):
    """The Queue contract over Kafka topics (module docstring). `max_items`/`max_bytes` do
    not apply: the brokers' retention bounds the log."""

    reads_back_seq = False

    def __init__(
        self,
        config: KafkaConfig,
        path: Path,
        max_items: int,
        max_bytes: int,
        retry_after: int,
        registry: CollectorRegistry,
    ) -> None:
        super().__init__(max_items, max_bytes, retry_after)
        self.config = config
        self.metrics = KafkaMetrics(registry)
        self._path = path / "kafka-state.sqlite3"
        topics = config.topics
        self._topic_of: dict[tuple[Signal, str], str] = {
            (Signal.SPANS, OTLP_PROTOBUF): topics.spans,
            (Signal.METRICS, OTLP_PROTOBUF): topics.metrics,
            (Signal.METRICS, METRICS_DIGEST): topics.native_metrics,
            (Signal.LOGS, OTLP_PROTOBUF): topics.logs,
            (Signal.ALERTS, NATIVE_JSON): topics.alerts,
            (Signal.HEALTH, NATIVE_JSON): topics.health,
        }
        # topic -> the signal and encoding of what it holds
        self._content = {topic: key for key, topic in self._topic_of.items()}
        self._partitions: dict[str, int] = {}
        self._local: _LocalStore | None = None
        # Rows of a checkpoint in progress (`stage()`), written with its end.
        self._staged: dict[str, StateChanges] = {}
        self._producer: Producer | None = None
        self._readers: dict[str, _Reader] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connected = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # consumer registered while running -> from when (Unix seconds) it reads
        self._since: dict[str, float] = {}

    # -- setup -----------------------------------------------------------------------

    def _common(self) -> dict[str, Any]:
        return {"bootstrap.servers": ",".join(self.config.brokers), "log_level": 0,
                "error_cb": self._on_error}

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._set_connected(False)

    def _set_connected(self, up: bool) -> None:
        if up != self._connected:
            if up:
                log.info("kafka: the brokers answer (%s)", ",".join(self.config.brokers))
            else:
                log.error("kafka: the brokers do not answer (%s); ingestion is refused (503)",
                          ",".join(self.config.brokers))
        self._connected = up
        self.metrics.connected.set(1 if up else 0)

    def _topic_partitions(self) -> dict[str, int]:
        partitions = self.config.partitions
        topics = self.config.topics
        return {
            topics.spans: partitions, topics.metrics: partitions, topics.logs: partitions,
            topics.native_metrics: partitions,
            # alerts and health are few: one partition keeps each service's reports in order
            topics.alerts: 1, topics.health: 1,
        }

    def _create_topics(self) -> None:
        """Create the missing topics and learn every topic's partition count."""
        admin = AdminClient(self._common())
        timeout = max(10.0, self.config.produce_timeout)
        try:
            existing = admin.list_topics(timeout=timeout).topics
        except KafkaException as exc:
            raise StartupError(
                f"queue.kafka.brokers {','.join(self.config.brokers)} do not answer: {exc}"
            ) from None
        wanted = self._topic_partitions()
        new = [
            NewTopic(topic, count, self.config.replication_factor,
                     config={"min.insync.replicas": str(self.config.min_insync_replicas)})
            for topic, count in wanted.items() if topic not in existing
        ]
        if new:
            for topic, future in admin.create_topics(new, request_timeout=timeout).items():
                try:
                    future.result(timeout)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise StartupError(f"cannot create Kafka topic {topic}: {exc}") from None
            log.info("kafka: created topics %s", ", ".join(t.topic for t in new))
        deadline = time.monotonic() + timeout
        while True:
            metadata = admin.list_topics(timeout=timeout).topics
            ready = all(
                t in metadata and metadata[t].error is None and metadata[t].partitions
                for t in wanted
            )
            if ready or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for topic in wanted:
            if topic not in metadata or not metadata[topic].partitions:
                raise StartupError(f"Kafka topic {topic} has no partitions")
            self._partitions[topic] = len(metadata[topic].partitions)

    def _consumer_topics(self, signals: frozenset[Signal]) -> list[str]:
        return sorted({t for (s, _), t in self._topic_of.items() if s in signals})

    def _open_reader(self, name: str, signals: frozenset[Signal]) -> _Reader:
        topics = self._consumer_topics(signals)
        shared = bool(signals & SHARED_SIGNALS)
        group = f"{self.config.group_prefix}-{name}"
        settings = {
            **self._common(),
            "group.id": group if shared else f"{group}-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": int(self.config.session_timeout * 1000),
            "heartbeat.interval.ms": max(100, int(self.config.session_timeout * 1000 / 4)),
            "fetch.wait.max.ms": 100,
            "queued.max.messages.kbytes": 16384,
        }
        reader = _Reader(name, group, shared, topics, Consumer(settings))
        if shared:
            reader.consumer.subscribe(
                topics,
                on_assign=lambda c, parts: self._assigned(reader, parts),
                on_revoke=lambda c, parts: self._revoked(reader, parts),
                on_lost=lambda c, parts: self._revoked(reader, parts),
            )
        else:
            if self._local is None:
                raise QueueClosed("the queue is not open")
            stored = self._local.offsets(name)
            reader.done = dict(stored)
            parts = [TopicPartition(t, p, stored.get((t, p), OFFSET_BEGINNING))
                     for t in topics for p in range(self._partitions[t])]
            reader.consumer.assign(self._starts(reader, parts, lambda p: p.offset < 0))
            if signals & FOLLOWED_SIGNALS:
                reader.ends = self._ends(reader, parts)
        return reader

    def _ends(self, reader: _Reader, parts: list[TopicPartition]) -> dict[TopicKey, int]:
        """Each partition's end now (none when the brokers do not say: not waited for)."""
        timeout = max(5.0, self.config.produce_timeout)
        try:
            return {(p.topic, p.partition): reader.consumer.get_watermark_offsets(
                TopicPartition(p.topic, p.partition), timeout)[1] for p in parts}
        except KafkaException as exc:
            log.warning("kafka: %s cannot read where its partitions end (%s)", reader.name, exc)
            return {}

    def caught_up(self, consumer: str) -> bool:
        """Whether a state consumer of alerts or health has applied (and written) every
        record its partitions held when it started: a restarted instance's state is as new
        as the log."""
        reader = self._readers.get(consumer)
        if reader is None or not reader.ends:
            return True
        if all(reader.done.get(key, 0) >= end for key, end in reader.ends.items()):
            reader.ends = {}
            return True
        return False

    def _starts(
        self, reader: _Reader, parts: list[TopicPartition],
        fresh: Callable[[TopicPartition], bool],
    ) -> list[TopicPartition]:
        """`parts` with the `fresh` ones (no offset stored or committed) of a consumer
        registered while running at the first record written since then (the end when
        there is none yet); the others as they are."""
        since = self._since.get(reader.name)
        wanted = [p for p in parts if fresh(p)]
        if since is None or not wanted:
            return parts
        starts = start_offsets(
            reader.consumer, wanted, since, max(5.0, self.config.produce_timeout)
        )
        return [TopicPartition(p.topic, p.partition, starts.get((p.topic, p.partition), p.offset))
                for p in parts]

    def _assigned(self, reader: _Reader, parts: list[TopicPartition]) -> None:
        """In the reader thread: partitions of the group for this instance. A consumer
        registered while running starts the partitions its group has no offsets for at
        `_starts`, and commits that start, so that the group's other members agree."""
        for part in parts:
            reader.revoked.discard((part.topic, part.partition))
        if reader.name not in self._since or not parts:
            return
        try:
            committed = reader.consumer.committed(parts, max(5.0, self.config.produce_timeout))
            starts = self._starts(reader, committed, lambda p: p.offset < 0)
            chosen = [p for p, c in zip(starts, committed, strict=True) if c.offset < 0]
            if chosen:
                reader.consumer.commit(offsets=chosen, asynchronous=False)
            reader.consumer.assign(starts)
        except KafkaException as exc:
            log.warning("kafka: %s cannot look up where it starts (%s); it reads from the "
                        "oldest record kept", reader.group, exc)

    def _revoked(self, reader: _Reader, parts: list[TopicPartition]) -> None:
        """In the reader thread, before the partitions go to another instance: what is
        buffered from them is dropped (not delivered yet: their next owner reads it), what
        is in flight gets up to HANDOVER_SECONDS to be accepted downstream, and the offsets
        of what was delivered are committed, so a planned rebalance duplicates nothing.
        What is still in flight after that may be delivered twice (counted)."""
        if not parts:
            return
        self.metrics.rebalances.labels(reader.group).inc()
        revoked = {(p.topic, p.partition) for p in parts}
        loop = self._loop
        if loop is None or loop.is_closed():
            reader.revoked |= revoked
            return
        try:
            delivered = asyncio.run_coroutine_threadsafe(
                self._hand_over(reader, revoked), loop
            ).result(HANDOVER_SECONDS + 5)
        except (TimeoutError, RuntimeError, concurrent.futures.CancelledError):
            return
        if delivered:
            try:
                reader.consumer.commit(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in delivered.items()],
                    asynchronous=False,
                )
            except KafkaException as exc:
                self.metrics.commit_failures.labels(reader.group).inc()
                log.warning("kafka: %s could not commit at a rebalance (%s)", reader.group, exc)

    async def _hand_over(self, reader: _Reader, revoked: set[TopicKey]) -> dict[TopicKey, int]:
        reader.revoked |= revoked
        kept: deque[Record] = deque()
        for record in reader.buffer:
            topic, partition, _ = reader.origin[record.seq]
            if (topic, partition) in revoked:
                del reader.origin[record.seq]
                reader.buffered_items -= record.items
            else:
                kept.append(record)
        reader.buffer = kept
        deadline = time.monotonic() + HANDOVER_SECONDS

        def in_flight() -> list[int]:
            return [seq for seq, (t, p, _) in reader.origin.items() if (t, p) in revoked]

        while in_flight() and time.monotonic() < deadline:
            reader.acked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.acked.wait(), deadline - time.monotonic())
        late = in_flight()
        if late:
            self.metrics.possible_duplicates.labels(reader.group).inc(len(late))
            log.warning("kafka: %s gives up partitions with %d records still in flight; "
                        "they may be delivered twice", reader.group, len(late))
            for seq in late:
                del reader.origin[seq]
                reader.lent.pop(seq, None)
        return {key: reader.done.pop(key) for key in revoked if key in reader.done}

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._local = await asyncio.to_thread(_LocalStore, self._path)
        await asyncio.to_thread(self._create_topics)
        self._producer = Producer({
            **self._common(),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.timeout.ms": int(self.config.produce_timeout * 1000),
            "socket.timeout.ms": 5000,
            "message.max.bytes": 16 * 1024 * 1024,
            "statistics.interval.ms": int(PROBE_INTERVAL * 1000),
            "stats_cb": self._on_stats,
        })
        self._stop.clear()
        self._set_connected(True)
        for name, consumer in self._consumers.items():
            self._readers[name] = await asyncio.to_thread(
                self._open_reader, name, consumer.signals
            )
        self._spawn(self._produce_loop, "kafka-producer")
        for reader in self._readers.values():
            self._run_reader(reader)
        self._closed = False

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run_reader(self, reader: _Reader) -> None:
        reader.thread = threading.Thread(
            target=partial(self._read_loop, reader), name=f"kafka-{reader.name}", daemon=True
        )
        reader.thread.start()

    async def _reader_of(self, consumer: str) -> _Reader | None:
        """The consumer's reader; opened (its group joined) for a consumer registered while
        running, opened again when its topics changed."""
        state = self._consumers.get(consumer)
        if state is None or self._producer is None:
            return None
        reader = self._readers.get(consumer)
        if reader is not None and reader.topics == self._consumer_topics(state.signals):
            return reader
        if reader is not None:
            await self._close_reader(reader)
        reader = await asyncio.to_thread(self._open_reader, consumer, state.signals)
        self._readers[consumer] = reader
        self._run_reader(reader)
        log.info("kafka: consumer %s reads %s (group %s)", consumer, ",".join(reader.topics),
                 reader.group)
        return reader

    async def _close_reader(self, reader: _Reader) -> None:
        """Stop a reader and leave its group: what it did not acknowledge is read again
        by the group's next owner of the partitions, from the offsets committed."""
        if self._readers.get(reader.name) is reader:
            del self._readers[reader.name]
        reader.stop.set()
        if reader.thread is not None:
            await asyncio.to_thread(reader.thread.join)
        reader.buffer.clear()
        reader.buffered_items = 0
        reader.origin.clear()
        reader.lent.clear()
        await asyncio.to_thread(reader.consumer.close)

    def register(self, consumer: str, signals: Iterable[Signal]) -> None:
        """As the base's; a consumer new while running reads from START_MARGIN before now
        where its group has no offsets (`_starts`)."""
        if self._producer is not None and consumer not in self._consumers:
            self._since[consumer] = time.time() - START_MARGIN
        super().register(consumer, signals)

    async def unregister(self, consumer: str) -> None:
        """A removed exporter: its reader leaves its group; its cursor is forgotten (the
        group's committed offsets are where it goes on if it comes back)."""
        if self._consumers.pop(consumer, None) is None:
            return
        reader = self._readers.get(consumer)
        if reader is not None:
            await self._close_reader(reader)
            log.info("kafka: consumer %s left group %s", consumer, reader.group)

    async def shutdown(self) -> None:
        if self._producer is None:
            return
        self._closed = True
        producer, self._producer = self._producer, None
        await asyncio.to_thread(producer.flush, 5.0)
        self._stop.set()
        for thread in [*self._threads, *(r.thread for r in self._readers.values() if r.thread)]:
            await asyncio.to_thread(thread.join)
        self._threads.clear()
        for reader in self._readers.values():
            await asyncio.to_thread(reader.consumer.close)
        self._readers.clear()
        if self._local is not None:
            self._local.close()
            self._local = None

    def writable(self) -> bool:
        return not self._closed and self._connected

    # -- producing -------------------------------------------------------------------

    def _produce_loop(self) -> None:
        """Delivery callbacks and the statistics (broker states) of the producer."""
        while not self._stop.is_set():
            producer = self._producer
            if producer is None:
                return
            producer.poll(0.05)

    def _on_stats(self, stats: str) -> None:
        """Connected while any broker's connection is up (librdkafka's statistics)."""
        brokers = orjson.loads(stats).get("brokers", {})
        self._set_connected(any(
            b.get("state") == "UP" and b.get("nodeid", -1) >= 0 for b in brokers.values()
        ))

    def _parts(
        self, signal: Signal, encoding: str, topic: str, payload: bytes, items: int,
        decoded: Any,
    ) -> Parts:
        partitions = self._partitions[topic]
        if partitions > 1:
            if signal is Signal.SPANS:
                return split_spans(payload, partitions) or {0: (payload, items, b"")}
            if encoding == METRICS_DIGEST:
                digest = decoded if decoded is not None else unpack_digest(payload)
                return split_digest(digest, partitions) or {0: (payload, items, b"")}
            if signal is Signal.METRICS:
                return split_otlp_metrics(payload, partitions) or {0: (payload, items, b"")}
        return {partition_of(payload[:64], partitions): (payload, items, b"")}

    async def put(
        self, signal: Signal, encoding: str, payload: bytes, items: int, decoded: Any = None
    ) -> int:
        producer = self._producer
        if self._closed or producer is None:
            raise QueueClosed("the queue is not accepting data")
        if not self._connected:
            self.metrics.produce_failures.labels("unreachable").inc()
            raise QueueClosed(
                f"Kafka ({','.join(self.config.brokers)}) is unreachable; retry after "
                f"{self.retry_after}s", UNAVAILABLE, self.retry_after,
            )
        topic = self._topic_of.get((signal, encoding))
        if topic is None:
            raise QueueClosed(f"no Kafka topic for {signal} in {encoding}", "unsupported")
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        futures: list[asyncio.Future[None]] = []

        def delivered(future: asyncio.Future[None]) -> Callable[[KafkaError | None, Any], None]:
            def report(error: KafkaError | None, _message: Any) -> None:
                loop.call_soon_threadsafe(_settle, future, error)
            return report

        try:
            for partition, (part, count, key) in self._parts(
                signal, encoding, topic, payload, items, decoded
            ).items():
                future = loop.create_future()
                futures.append(future)
                producer.produce(
                    topic, part, key or None, partition=partition,
                    headers=[(ENCODING_HEADER, encoding.encode()),
                             (ITEMS_HEADER, str(count).encode())],
                    on_delivery=delivered(future),
                )
        except BufferError:
            self.metrics.produce_failures.labels("producer_queue_full").inc()
            raise QueueFull("the Kafka producer's queue", self.retry_after) from None
        except KafkaException as exc:
            self.metrics.produce_failures.labels("produce_error").inc()
            raise QueueClosed(f"Kafka refused the write: {exc}", UNAVAILABLE,
                              self.retry_after) from None
        try:
            async with asyncio.timeout(self.config.produce_timeout + 2.0):
                await asyncio.gather(*futures)
        except (KafkaException, TimeoutError) as exc:
            reason = "timeout" if isinstance(exc, TimeoutError) else "not_acknowledged"
            self.metrics.produce_failures.labels(reason).inc()
            raise QueueClosed(
                f"Kafka did not acknowledge the write ({exc or 'timed out'}); retry after "
                f"{self.retry_after}s", UNAVAILABLE, self.retry_after,
            ) from None
        self.metrics.produce_latency.observe(time.monotonic() - started)
        seq = self._next_seq
        self._next_seq += 1
        return seq

    # -- consuming -------------------------------------------------------------------

    def _read_loop(self, reader: _Reader) -> None:
        measured = 0.0
        while not self._stop.is_set() and not reader.stop.is_set():
            if reader.buffered_items >= BUFFER_ITEMS:
                time.sleep(0.05)
                continue
            self._commit_pending(reader)
            try:
                messages = reader.consumer.consume(500, 0.1)
            except KafkaException as exc:
                log.warning("kafka: consumer %s: %s", reader.name, exc)
                time.sleep(0.5)
                continue
            good = [m for m in messages if m.error() is None]
            if good and self._loop is not None:
                self._loop.call_soon_threadsafe(self._arrive, reader, good)
            now = time.monotonic()
            if now - measured >= LAG_INTERVAL:
                measured = now
                self._measure_lag(reader)
        self._commit_pending(reader)

    def _commit_pending(self, reader: _Reader) -> None:
        loop = self._loop
        while loop is not None:
            try:
                offsets, future = reader.commits.get_nowait()
            except Empty:
                return
            error: KafkaError | None = None
            try:
                reader.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                error = exc.args[0]
            loop.call_soon_threadsafe(_settle, future, error)

    def _measure_lag(self, reader: _Reader) -> None:
        try:
            assignment = reader.consumer.assignment()
            positions = reader.consumer.position(assignment) if assignment else []
        except KafkaException:
            return
        for part in positions:
            key = (part.topic, part.partition)
            _, high = reader.consumer.get_watermark_offsets(part, cached=True) or (-1, -1)
            if high < 0:
                continue
            done = reader.done.get(key, part.offset if part.offset >= 0 else 0)
            self.metrics.lag.labels(reader.group, part.topic, str(part.partition)).set(
                max(0, high - done)
            )

    def _arrive(self, reader: _Reader, messages: list[Message]) -> None:
        """On the loop: the records read, numbered in arrival order."""
        consumer = self._consumers.get(reader.name)
        if consumer is None or self._readers.get(reader.name) is not reader:
            return  # a reader closed meanwhile
        for message in messages:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None:
                continue
            key = (topic, partition)
            if key in reader.revoked:
                continue
            done = reader.done.get(key)
            if done is not None and offset < done:
                continue
            # The topic says what it holds (the encoding header is informative only).
            signal, encoding = self._content[topic]
            payload = message.value() or b""
            header = _header(message, ITEMS_HEADER)
            try:
                items = int(header) if header is not None else self._count(
                    signal, encoding, payload
                )
            except Exception:
                log.warning("kafka: %s[%d]@%d is unreadable; skipped", topic, partition, offset)
                continue
            seq = self._next_seq
            self._next_seq += 1
            reader.buffer.append(Record(seq, signal, encoding, payload, items))
            reader.buffered_items += items
            reader.origin[seq] = (topic, partition, offset)
        consumer.wakeup.set()

    @staticmethod
    def _count(signal: Signal, encoding: str, payload: bytes) -> int:
        if encoding == METRICS_DIGEST:
            return unpack_digest(payload).items
        if encoding == NATIVE_JSON:
            return len(orjson.loads(payload))
        return _count_otlp(signal, payload)

    async def read(self, consumer: str, after: int, max_items: int) -> list[Record]:
        reader = await self._reader_of(consumer)
        if reader is None:
            return []
        if after < reader.handed:
            self._lend_back(reader, after)
        batch: list[Record] = []
        count = 0
        while reader.buffer and count < max_items:
            record = reader.buffer.popleft()
            reader.buffered_items -= record.items
            if record.seq <= after:
                continue
            batch.append(record)
            reader.lent[record.seq] = record
            count += record.items
        if batch:
            reader.handed = batch[-1].seq
        return batch

    @staticmethod
    def _lend_back(reader: _Reader, after: int) -> None:
        """A reader starting again from `after` (a replaced exporter's successor): the
        records handed out past it and not acknowledged are read again, first."""
        again = sorted((seq, r) for seq, r in reader.lent.items() if seq > after)
        for seq, _ in again:
            del reader.lent[seq]
        reader.buffer.extendleft(record for _, record in reversed(again))
        reader.buffered_items += sum(record.items for _, record in again)
        reader.handed = after

    def _positions(self, reader: _Reader, seq: int) -> dict[TopicKey, int]:
        """The next offset per partition once every record up to seq is handled."""
        positions: dict[TopicKey, int] = {}
        for handled in [s for s in reader.origin if s <= seq]:
            reader.lent.pop(handled, None)
            topic, partition, offset = reader.origin.pop(handled)
            key = (topic, partition)
            positions[key] = max(positions.get(key, 0), offset + 1)
        reader.done.update(positions)
        reader.acked.set()
        return positions

    async def ack(self, consumer: str, seq: int) -> None:
        state = self._consumers.get(consumer)
        reader = self._readers.get(consumer)
        if state is None or reader is None or seq <= state.cursor:
            return
        state.cursor = seq
        positions = self._positions(reader, seq)
        if not positions:
            return
        if not reader.shared:
            await self._write({consumer: positions}, {})
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()
                   if (t, p) not in reader.revoked]
        if not offsets:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        reader.commits.put((offsets, future))
        try:
            await future
        except KafkaException as exc:
            self.metrics.commit_failures.labels(reader.group).inc()
            log.warning("kafka: %s could not commit its offsets (%s); the records are "
                        "delivered again", reader.group, exc)

    async def checkpoint(
        self, cursors: dict[str, int], changes: dict[str, StateChanges]
    ) -> None:
        if self._staged:
            merged = {name: dict(rows) for name, rows in self._staged.items()}
            for name, rows in changes.items():
                merged.setdefault(name, {}).update(rows)
            changes = merged
        offsets: dict[str, dict[TopicKey, int]] = {}
        for consumer, seq in cursors.items():
            state = self._consumers[consumer]
            reader = self._readers.get(consumer)
            if reader is None or seq <= state.cursor:
                continue
            state.cursor = seq
            offsets[consumer] = self._positions(reader, seq)
        if offsets or changes:
            await self._write(offsets, changes)
        self._staged = {}

    async def stage(self, changes: dict[str, StateChanges]) -> None:
        """The local store has no staging table: the staged rows wait here and are written
        with the checkpoint that ends them (the state on disk never shows half of one)."""
        for name, rows in changes.items():
            self._staged.setdefault(name, {}).update(rows)

    async def _write(
        self, offsets: dict[str, dict[TopicKey, int]], changes: dict[str, StateChanges]
    ) -> None:
        store = self._local
        if store is None:
            raise QueueClosed("the queue is not open")
        try:
            await asyncio.to_thread(store.save, offsets, changes)
        except (sqlite3.Error, OSError) as exc:
            raise QueueClosed(f"queue state storage failed: {exc}") from None

    async def load_state(self, consumer: str) -> list[tuple[bytes, bytes]]:
        store = self._local
        return [] if store is None else await asyncio.to_thread(store.state, consumer)

    # The base class's row hooks: put(), read(), ack() and checkpoint() above replace the
    # methods that call them.
    async def _store(self, record: Record) -> None:
        raise QueueClosed("KafkaQueue.put produces directly")

    async def _read(self, signals: frozenset[Signal], after: int, max_items: int) -> list[Record]:
        raise QueueClosed("KafkaQueue.read reads its consumer's records")

    async def _save(
        self,
        release: dict[Signal, int],
        cursors: dict[str, int],
        changes: dict[str, StateChanges],
        *,
        staged: dict[str, StateChanges] | None = None,
        publish: bool = False,
    ) -> None:
        raise QueueClosed("KafkaQueue.checkpoint writes offsets")


def _settle(future: asyncio.Future[None], error: KafkaError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(KafkaException(error))


def build_kafka_queue(
    config: KafkaConfig, path: Path, max_items: int, max_bytes: int, retry_after: int,
    registry: CollectorRegistry,
) -> KafkaQueue:
    """The factory `build_queue` calls for `queue.kind: kafka`."""
    return KafkaQueue(config, path, max_items, max_bytes, retry_after, registry)
