"""The one exporter helper: queue reading, batching, retry, in-order acknowledgement.

Modelled on the OpenTelemetry Collector's exporterhelper. An exporter is a bare
`push(records)` that raises whatever its transport raises; `retry.classify()` turns
that, once, into a `PermanentError` (drop, count, log) or a `RetryableError` (back off
with jitter, honour the downstream's Retry-After / RetryInfo, try again). `Delivery` is
that retry policy for one downstream; `QueueExporter` drives a `Delivery` from the
durable queue with N concurrent senders and acknowledges in seq order only, so the
queue keeps everything a downstream has not accepted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar

import grpc
import httpx

from flext_observability.pipeline.queue import Queue, QueueClosed, Record
from flext_observability.retry import (
    RETRYABLE_HTTP_STATUS,
    Backoff,
    PermanentError,
    RetryableError,
    classify,
)
from flext_observability.settings import RetryConfig
from flext_observability.signals import Signal
from flext_observability.tasks import cancel
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)

T = TypeVar("T")

class Interrupted(Exception):
    """Shutdown stopped a delivery before the downstream accepted it."""


_EXPECTED_ERRORS = (
    PermanentError, RetryableError, httpx.HTTPError, grpc.RpcError, TimeoutError, OSError
)


class Delivery:
    """Attempts against one downstream: per-attempt timeout, classification, backoff.

    Counts `export_failures` and `export_retries` under `label`, keeps `up` and the last
    error for /readyz, and reports every change of `up` to `on_up`. Backoff sleeps end
    early when `stop` is set; the delivery then raises `Interrupted`.
    """

    def __init__(
        self,
        name: str,
        label: str,
        telemetry: SelfTelemetry,
        retry: RetryConfig,
        timeout: float,
        stop: asyncio.Event,
        on_up: Callable[[], None],
        retryable_http: frozenset[int] = RETRYABLE_HTTP_STATUS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.label = label
        self.up = True
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_success_at: float | None = None
        self._telemetry = telemetry
        self._retry = retry
        self._timeout = timeout
        self._stop = stop
        self._on_up = on_up
        self._retryable_http = retryable_http
        self._sleep = sleep
        self._rng = rng
        self._wall = wall_clock

    def state(self) -> dict[str, Any]:
        return {
            "state": "up" if self.up else "down",
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_success_at": self.last_success_at,
        }

    def _set_up(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            self._on_up()

    async def deliver(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt` until it succeeds; raise PermanentError or Interrupted otherwise."""
        backoff = Backoff(self._retry, self._rng)
        while True:
            try:
                async with asyncio.timeout(self._timeout):
                    result = await attempt()
            except Exception as exc:
                error = classify(exc, self._retryable_http)
                self._telemetry.export_failures.labels(self.label).inc()
                self.last_error = str(error)
                self.last_error_at = self._wall()
                self._set_up(False)
                if isinstance(error, PermanentError):
                    raise error from exc
                if self._stop.is_set():
                    raise Interrupted(str(error)) from exc
                delay = backoff.next(error.retry_after)
                self._telemetry.export_retries.labels(self.label).inc()
                log.warning("%s: export failed (%s); retrying in %.2fs", self.name, error, delay,
                            exc_info=not isinstance(exc, _EXPECTED_ERRORS))
                if not await self._pause(delay):
                    raise Interrupted(str(error)) from exc
                continue
            self.last_success_at = self._wall()
            self._set_up(True)
            return result

    async def _pause(self, delay: float) -> bool:
        """Sleep `delay`; False when shutdown cut the sleep short."""
        sleeper = asyncio.ensure_future(self._sleep(delay))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()
        return not self._stop.is_set()


Push = Callable[[list[Record]], Awaitable[int]]


class Exporter(Protocol):
    """A sink: what the collector starts, stops by a deadline and shows on /readyz (a
    local consumer, the queue's exporters, the Alertmanager loop)."""

    @property
    def name(self) -> str: ...

    async def start(self) -> None: ...

    async def shutdown(self, deadline: float) -> None: ...

    def state(self) -> str | dict[str, Any]: ...


class QueueExporter:
    """Reads its signals from the queue after its own cursor and delivers them with `push`.

    `push(records)` sends the records as one request and returns how many items the
    downstream refused inside an accepted request (OTLP partial_success), usually 0.
    Up to `num_senders` batches are in flight; the cursor only moves to the highest seq
    below which every batch is done (delivered, or dropped as permanently refused), so
    a crash re-sends at most the batches that were in flight.

    `name` is the queue cursor's; `label` (default `name`) the self-metrics'. `report_up`
    replaces setting `exporter_up{label}` from this delivery alone (an exporter made of
    several helpers reports them together). `prepare(batch)` runs once per batch, in seq
    order, before its first attempt: a conversion that keeps state across batches.
    """

    def __init__(
        self,
        name: str,
        queue: Queue,
        signals: Iterable[Signal],
        push: Push,
        telemetry: SelfTelemetry,
        *,
        batch_max_items: int,
        batch_timeout: float,
        num_senders: int,
        retry: RetryConfig,
        timeout: float,
        retryable_http: frozenset[int] = RETRYABLE_HTTP_STATUS,
        label: str | None = None,
        report_up: Callable[[], None] | None = None,
        prepare: Callable[[list[Record]], list[Record]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self.label = label or name
        self._report = report_up
        self._prepare = prepare
        self._queue = queue
        self._push = push
        self._telemetry = telemetry
        self._batch_max_items = batch_max_items
        self._batch_timeout = batch_timeout
        self._clock = clock
        self._stop = asyncio.Event()
        self.delivery = Delivery(
            name, self.label, telemetry, retry, timeout, self._stop, self._report_up,
            retryable_http, sleep, rng,
        )
        self._slots = asyncio.Semaphore(num_senders)
        self._reader: asyncio.Task[None] | None = None
        self._senders: set[asyncio.Task[None]] = set()
        # Last seq of every batch handed to a sender, in seq order -> done?
        self._batches: dict[int, bool] = {}
        self._running = False
        queue.register(name, signals)

    def _report_up(self) -> None:
        if self._report is not None:
            self._report()
            return
        self._telemetry.exporter_up.labels(self.label).set(1 if self.delivery.up else 0)

    def state(self) -> dict[str, Any]:
        state = self.delivery.state()
        if not self._running:
            state["state"] = "stopped"
        state["in_flight_batches"] = len(self._senders)
        state["acked_seq"] = self._queue.cursor(self.name)
        return state

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._stop.clear()
        self._report_up()
        self._reader = asyncio.create_task(self._read_loop(), name=f"exporter-{self.name}")

    async def shutdown(self, deadline: float) -> None:
        """Stop reading; let in-flight pushes finish until `deadline` (on `clock`).

        What was not delivered by then is not acknowledged and stays in the queue for the
        next start. Safe twice and before start.
        """
        if not self._running:
            return
        self._running = False
        self._stop.set()
        self._queue.wake(self.name)
        # The reader also stops by itself on `_stop`: Python 3.11's wait_for can swallow a
        # cancellation that races with the event it waits for.
        await cancel(self._reader)
        self._reader = None
        if self._senders:
            _, late = await asyncio.wait(self._senders, timeout=max(0.0, deadline - self._clock()))
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._senders.clear()
        self._batches.clear()

    async def _read_loop(self) -> None:
        after = self._queue.cursor(self.name)
        while True:
            await self._slots.acquire()
            try:
                batch = await self._next_batch(after)
            except BaseException:
                self._slots.release()
                raise
            if batch is None:
                self._slots.release()
                return
            after = batch[-1].seq
            if self._prepare is not None:
                batch = self._prepare(batch)
            self._batches[after] = False
            task = asyncio.create_task(self._send(batch), name=f"exporter-{self.name}-send")
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)

    async def _next_batch(self, after: int) -> list[Record] | None:
        """Records after `after`: as soon as `batch_max_items` are there, or `batch_timeout`
        after the first one arrived; None once shutdown began."""
        batch: list[Record] = []
        items = 0
        deadline = None
        while not self._stop.is_set():
            more = await self._queue.read(self.name, after, self._batch_max_items - items)
            if more:
                batch += more
                items += sum(r.items for r in more)
                after = more[-1].seq
                if deadline is None:
                    deadline = self._clock() + self._batch_timeout
            if batch and (
                items >= self._batch_max_items
                or (deadline is not None and self._clock() >= deadline)
            ):
                return batch
            if deadline is None:
                await self._queue.wait(self.name, 1.0)
            else:
                await self._queue.wait(self.name, deadline - self._clock(),
                                       self._batch_max_items - items)
        return None

    async def _send(self, batch: list[Record]) -> None:
        items = sum(r.items for r in batch)
        try:
            rejected = await self.delivery.deliver(lambda: self._push(batch))
        except PermanentError as error:
            self._telemetry.dropped.labels(self.label, error.reason).inc(items)
            log.error("%s: dropped %d items (records %d..%d): %s",
                      self.name, items, batch[0].seq, batch[-1].seq, error)
        except Interrupted:
            log.info("%s: records %d..%d stay queued for the next start",
                     self.name, batch[0].seq, batch[-1].seq)
            return
        else:
            self._telemetry.exported.labels(self.label).inc(items - rejected)
            if rejected:
                self._telemetry.dropped.labels(self.label, "rejected_by_downstream").inc(rejected)
        finally:
            self._slots.release()
        try:
            await self._done(batch[-1].seq)
        except QueueClosed as exc:
            log.warning("%s: cannot acknowledge records up to %d (%s); they will be sent again",
                        self.name, batch[-1].seq, exc)

    async def _done(self, last_seq: int) -> None:
        """Mark a batch done; acknowledge up to the end of the done prefix, in seq order."""
        self._batches[last_seq] = True
        ack = None
        while self._batches:
            first, done = next(iter(self._batches.items()))
            if not done:
                break
            ack = first
            del self._batches[first]
        if ack is not None:
            await self._queue.ack(self.name, ack)
