"""The limits processor, in front of the receivers: requests in flight and the process's
memory. The builder makes one memory limiter and a gate for the HTTP app (`IngestLimits`)
and one for OTLP/gRPC, in the collector process and in each ingest worker.

`MemoryLimiter` is modeled on the OpenTelemetry Collector's memory_limiter: a background
task samples the resident set size every `limits.memory_check_interval`; while it is above
`limits.memory_limit_mib - limits.memory_spike_limit_mib` (the soft limit), new data is
refused until it drops back below. Above the soft limit a garbage collection runs (at most
every RECLAIM_INTERVAL seconds) and the C allocator is asked to hand freed memory back,
so that RSS can drop at all.

`Gate` admits the requests of one receiver (HTTP or gRPC): none while memory is limited
or while the queue is full (nothing could be queued: refusing before the body is read and
validated keeps an overload cheap), and at most `limits.max_concurrent_requests` at once.
A request whose body is still arriving `limits.slow_body_seconds` after it was admitted
moves to one of `limits.max_slow_requests` slots of its own, so that slow senders cannot
hold every slot for `server.read_timeout`; with none free it is answered 408 (reason
`slow_body`).
Refusals are counted in `flext_collector_refused_items_total{signal, reason}` (reasons
`memory_limit`, `queue_full`, `concurrency_limit`) and name the key that was hit.
`IngestLimits` is the ASGI middleware that puts the HTTP ingest routes behind a gate and
answers 503 (429 for a full queue) with Retry-After before the body is read; health,
readiness, /metrics and the docs are never refused.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from fastapi.responses import Response
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flext_observability.models.otlp import encode_status
from flext_observability.receivers.body import SlowBody, media_type
from flext_observability.receivers.otlp import (
    JSON,
    PROTOBUF,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
)
from flext_observability.receivers.toolkit import Refusal, error_response
from flext_observability.routes import INGEST
from flext_observability.tasks import cancel
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)

MIB = 1024 * 1024
STATM = "/proc/self/statm"
# While above the soft limit, memory is reclaimed at most this often (seconds).
RECLAIM_INTERVAL = 5.0
MEMORY_LIMIT = "memory_limit"
QUEUE_FULL = "queue_full"
CONCURRENCY_LIMIT = "concurrency_limit"
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def read_rss() -> int:
    """The process's resident set size in bytes, from /proc/self/statm."""
    with open(STATM, "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, which returns freed heap pages to the system; None elsewhere."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None


class MemoryLimiter:
    """Refuses new data while RSS is above `limit - spike` bytes; `limit` 0 turns it off."""

    def __init__(
        self,
        limit: int,
        spike: int,
        interval: float,
        rss: Callable[[], int] = read_rss,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.soft_limit = limit - spike
        self.interval = interval
        self.rss = 0
        self.limited = False
        self._read_rss = rss
        self._clock = clock
        self._trim = _malloc_trim()
        self._last_reclaim = -RECLAIM_INTERVAL
        self._task: asyncio.Task[None] | None = None

    def check(self) -> None:
        """Take one sample and refuse or accept from now on."""
        rss = self._read_rss()
        if rss > self.soft_limit and self._clock() - self._last_reclaim >= RECLAIM_INTERVAL:
            self._last_reclaim = self._clock()
            gc.collect()
            if self._trim is not None:
                self._trim(0)
            rss = self._read_rss()
        self.rss = rss
        limited = rss > self.soft_limit
        if limited != self.limited:
            self.limited = limited
            if limited:
                log.warning("memory limiter: %s; refusing new data", self._usage())
            else:
                log.info("memory limiter: %s; accepting data again", self._usage())

    async def start(self) -> None:
        """Sample now (a missing /proc fails here, at startup) and then every `interval`."""
        if not self.limit or self._task is not None:
            return
        self.check()
        self._task = asyncio.create_task(self._run(), name="memory-limiter")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()

    async def reconfigure(self, limit: int, spike: int, interval: float) -> None:
        """New limits (a reload), judged at once; a limit of 0 stops the sampling and lets
        data in, a limit set where it was 0 starts it."""
        self.limit = limit
        self.soft_limit = limit - spike
        self.interval = interval
        if limit:
            if self._task is None:
                await self.start()
            else:
                self.check()
            return
        await self.shutdown()
        if self.limited:
            self.limited = False
            log.info("memory limiter: turned off; accepting data again")

    async def shutdown(self) -> None:
        """Stop sampling; safe twice and without start."""
        await cancel(self._task)
        self._task = None

    def _usage(self) -> str:
        return (
            f"RSS {self.rss / MIB:.0f} MiB is above limits.memory_limit_mib "
            f"({self.limit // MIB}) minus limits.memory_spike_limit_mib "
            f"({(self.limit - self.soft_limit) // MIB})"
            if self.rss > self.soft_limit
            else f"RSS {self.rss / MIB:.0f} MiB is below {self.soft_limit // MIB} MiB"
        )

    def message(self, retry_after: int) -> str:
        return f"memory limit reached: {self._usage()}; retry after {retry_after}s"

    def state(self) -> dict[str, Any]:
        """For /readyz."""
        if not self.limit:
            return {"limited": False, "limit_mib": 0}
        return {
            "limited": self.limited,
            "rss_mib": round(self.rss / MIB, 1),
            "soft_limit_mib": self.soft_limit // MIB,
            "limit_mib": self.limit // MIB,
        }


class Throttled(Exception):
    """A request refused by a gate, for `reason`: memory_limit, queue_full, concurrency_limit."""

    def __init__(self, reason: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        """The HTTP answer: 429 for a full queue (as when a put finds it full), else 503."""
        return 429 if self.reason == QUEUE_FULL else 503


class QueueLevels(Protocol):
    """How full the queue is: the queue itself, or an ingest worker's view of it."""

    max_items: int
    max_bytes: int
    retry_after: int

    @property
    def total_items(self) -> int: ...

    @property
    def total_bytes(self) -> int: ...


class Gate:
    """Admission to one receiver: its own count of requests in flight, the shared memory
    limiter. `enter()` before handling a request, `leave()` after."""

    def __init__(
        self,
        max_in_flight: int,
        memory: MemoryLimiter,
        queue: QueueLevels,
        telemetry: SelfTelemetry,
        retry_after: int,
        max_slow: int = 32,
        slow_after: float = 1.0,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.max_slow = max_slow
        self.slow = 0
        self.slow_after = slow_after
        self.retry_after = retry_after
        self._memory = memory
        self._queue = queue
        self._telemetry = telemetry

    def enter(self, signal: str) -> None:
        """Count one request in, or raise Throttled (counted as refused) at a limit."""
        retry_after = self.retry_after
        queue = self._queue
        if self._memory.limited:
            reason, message = MEMORY_LIMIT, self._memory.message(retry_after)
        elif queue.total_items >= queue.max_items or queue.total_bytes >= queue.max_bytes:
            reason, retry_after = QUEUE_FULL, queue.retry_after
            limit = "queue.max_items" if queue.total_items >= queue.max_items else "queue.max_bytes"
            message = f"queue is full ({limit} reached); retry after {retry_after}s"
        elif self.in_flight >= self.max_in_flight:
            reason = CONCURRENCY_LIMIT
            message = (
                f"{self.in_flight} requests are in flight, the most "
                f"limits.max_concurrent_requests={self.max_in_flight} allows; "
                f"retry after {retry_after}s"
            )
        else:
            self.in_flight += 1
            return
        self._telemetry.refused.labels(signal, reason).inc()
        raise Throttled(reason, message, retry_after)

    def leave(self, slow: bool = False) -> None:
        if slow:
            self.slow -= 1
        else:
            self.in_flight -= 1

    def to_slow(self) -> None:
        """Move a request from its slot to a slot for slow bodies, or raise SlowBody
        (the request keeps its slot until it leaves)."""
        if self.slow >= self.max_slow:
            raise SlowBody(
                f"the body is still arriving after {self.slow_after:g}s "
                f"(limits.slow_body_seconds) and limits.max_slow_requests={self.max_slow} "
                "slow bodies are arriving already"
            )
        self.in_flight -= 1
        self.slow += 1


class _Slot:
    """One admitted request's `receive`: while its body arrives within the gate's
    `slow_after`, it holds an ordinary slot; after that, a slot for slow bodies."""

    def __init__(self, gate: Gate, receive: Receive) -> None:
        self._gate = gate
        self._receive = receive
        self._deadline = asyncio.get_running_loop().time() + gate.slow_after
        self.slow = False
        self._body_done = False

    async def receive(self) -> Message:
        if self.slow or self._body_done:
            return await self._receive()
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            self._gate.to_slow()
            self.slow = True
            return await self._receive()
        self._body_done = not message.get("more_body", False)
        return message


def _native_answer(throttled: Throttled, headers: dict[str, str], _: Scope) -> Response:
    return error_response(Refusal.single(throttled.status, throttled.reason, throttled.message,
                                         headers=headers))


def _otlp_answer(throttled: Throttled, headers: dict[str, str], scope: Scope) -> Response:
    """A google.rpc.Status in the request's encoding, as the OTLP/HTTP receiver answers."""
    json = media_type(Headers(scope=scope).get("content-type")) == JSON
    code = UNAVAILABLE if throttled.reason == MEMORY_LIMIT else RESOURCE_EXHAUSTED
    return Response(encode_status(code, throttled.message, json=json), throttled.status,
                    headers, media_type=JSON if json else PROTOBUF)


_Answer = Callable[[Throttled, dict[str, str], Scope], Response]
# POST path -> (signal, how a refusal is answered)
INGEST_ROUTES: dict[str, tuple[str, _Answer]] = {
    path: (route.signal.value, _native_answer if route.protocol == "native" else _otlp_answer)
    for path, route in INGEST.items()
}


class IngestLimits:
    """ASGI middleware: the HTTP ingest routes pass the gate or get 429/503 + Retry-After at
    once."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            INGEST_ROUTES.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if route is None:
            await self.app(scope, receive, send)
            return
        signal, answer = route
        try:
            self.gate.enter(signal)
        except Throttled as throttled:
            headers = {"Retry-After": str(throttled.retry_after)}
            await answer(throttled, headers, scope)(scope, receive, send)
            return
        slot = _Slot(self.gate, receive)
        try:
            await self.app(scope, slot.receive, send)
        finally:
            self.gate.leave(slot.slow)
