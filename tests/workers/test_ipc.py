"""The worker <-> collector channel over a real socket pair, with a real intake and queue."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import orjson
import pytest
from prometheus_client import CollectorRegistry

from flext_observability.exporters.prometheus.store import MetricStore
from flext_observability.models.wire import decode_metrics, digest, pack_digest
from flext_observability.pipeline.intake import METRICS_DIGEST, Inadmissible, Intake
from flext_observability.pipeline.queue import (
    MemoryQueue,
    QueueClosed,
    QueueFull,
    Record,
    Signal,
)
from flext_observability.processors.admission import SeriesAdmission
from flext_observability.processors.limits import MemoryLimiter
from flext_observability.telemetry import SelfTelemetry
from flext_observability.workers.ipc import IntakeServer, QueueView, RemoteIntake


def metrics_body(n: int, name: str = "ipc_items", kind: str = "counter") -> bytes:
    return orjson.dumps([
        {"name": name, "type": kind, "value": 1, "service": "s", "labels": {"i": str(i)}}
        for i in range(n)
    ])


class Pair:
    """Both ends in one loop: the collector's server and a worker's client."""

    def __init__(self, max_items: int = 1000, max_series_per_metric: int = 100,
                 memory: MemoryLimiter | None = None) -> None:
        self.queue = MemoryQueue(max_items, 1 << 30, retry_after=7)
        self.queue.register("test", list(Signal))
        self.telemetry = SelfTelemetry(CollectorRegistry(), self.queue)
        self.store = MetricStore(1000, max_series_per_metric, 300, max_series_per_service=1000)
        self.server = IntakeServer(Intake(self.queue, SeriesAdmission(self.store)), self.telemetry,
                                   memory or MemoryLimiter(0, 0, 1), retry_after=3)
        self.lost = asyncio.Event()
        ours, theirs = socket.socketpair()
        self.view = QueueView(max_items, 1 << 30, 7)
        self.remote = RemoteIntake(theirs, self.view, self.lost.set)
        self._ours = ours

    async def __aenter__(self) -> Pair:
        await self.queue.start()
        self.serving = asyncio.create_task(self.server.serve(self._ours))
        await self.remote.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.remote.shutdown()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.serving, 5)
        await self.queue.shutdown()

    async def records(self) -> list[Record]:
        return await self.queue.read("test", 0, 1 << 30)


def packed(body: bytes) -> bytes:
    return pack_digest(digest(decode_metrics(body, batch=True)))


async def put_metrics(remote: RemoteIntake, body: bytes) -> None:
    await remote.put(Signal.METRICS, METRICS_DIGEST, packed(body), body.count(b'"name"'))


async def test_a_put_is_queued_with_its_digest_and_the_levels_come_back():
    async with Pair() as pair:
        body = metrics_body(10)
        await put_metrics(pair.remote, body)
        [record] = await pair.records()
        assert record.payload == packed(body)
        assert record.decoded == digest(decode_metrics(body, batch=True))
        assert (pair.view.total_items, pair.view.total_bytes) == (10, len(packed(body)))


async def test_concurrent_puts_each_get_their_own_answer():
    async with Pair() as pair:
        bodies = [metrics_body(i + 1, name=f"m{i}") for i in range(20)]
        await asyncio.gather(*(put_metrics(pair.remote, b) for b in bodies))
        assert sorted(r.payload for r in await pair.records()) == sorted(map(packed, bodies))


async def test_a_full_queue_answers_queue_full_with_its_retry_after():
    async with Pair(max_items=5) as pair:
        with pytest.raises(QueueFull) as full:
            await put_metrics(pair.remote, metrics_body(6))
        assert full.value.retry_after == 7
        assert "queue.max_items" in str(full.value)
        assert not await pair.records()


async def test_series_past_a_limit_come_back_as_the_items_errors():
    async with Pair(max_series_per_metric=3) as pair:
        with pytest.raises(Inadmissible) as refused:
            await put_metrics(pair.remote, metrics_body(4))
        [error] = refused.value.errors
        assert (error.index, error.field) == (0, "name")
        assert "max_series_per_metric=3" in error.message


async def test_other_signals_travel_without_a_digest():
    async with Pair() as pair:
        await pair.remote.put(Signal.SPANS, "otlp-pb", b"\x0a\x00", 1)
        [record] = await pair.records()
        assert (record.signal, record.payload, record.decoded) == (Signal.SPANS, b"\x0a\x00", None)


async def test_counts_from_a_worker_are_added_to_the_collectors_counters():
    async with Pair() as pair:
        pair.remote.send_counts([("flext_collector_refused_items",
                                  {"signal": "metrics", "reason": "invalid"}, 3.0)])
        await put_metrics(pair.remote, metrics_body(1))  # answered after the counts were read
        counts = pair.telemetry.counts()
        assert counts["flext_collector_refused_items",
                      (("reason", "invalid"), ("signal", "metrics"))] == 3.0


async def test_while_the_collector_process_is_past_its_memory_limit_puts_are_refused():
    memory = MemoryLimiter(100 * 2**20, 0, 1, rss=lambda: 200 * 2**20)
    memory.check()
    async with Pair(memory=memory) as pair:
        with pytest.raises(QueueClosed) as refused:
            await put_metrics(pair.remote, metrics_body(1))
        assert (refused.value.reason, refused.value.retry_after) == ("memory_limit", 3)
        assert "memory limit reached" in str(refused.value)
        assert not await pair.records()


async def test_when_the_collector_process_goes_puts_fail_closed_and_the_worker_is_told():
    async with Pair() as pair:
        pair.serving.cancel()
        pair._ours.close()
        await asyncio.wait_for(pair.lost.wait(), 5)
        with pytest.raises(QueueClosed):
            await put_metrics(pair.remote, metrics_body(1))
