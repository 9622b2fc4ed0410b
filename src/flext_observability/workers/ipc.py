"""The channel between an ingest worker and the collector process: one socket pair each.

A frame is a fixed header (op, request id, meta length, body length), JSON meta, then the
body as it is: a validated request's payload travels once, with no encoding around it.

- PUT (worker -> collector): meta {signal, encoding, items}, body = payload. The answer
  (same id) is {"queue": [items, bytes]} once the request is durable (with "rejected":
  [points, message, {reason: points}] when admission left OTLP points out), or an error:
  `queue_full`, `closed`, `inadmissible` with the items' errors and reason. The queue's
  levels ride on every answer, so a worker's gate refuses at a full queue before reading a
  body.
- COUNTS (worker -> collector): the worker's self-telemetry increments; no answer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from flext_observability.models.errors import ItemError
from flext_observability.pipeline.intake import (
    NOTHING_REJECTED,
    Inadmissible,
    Intake,
    Rejected,
)
from flext_observability.pipeline.queue import QueueClosed, QueueFull
from flext_observability.processors.limits import MEMORY_LIMIT, MemoryLimiter
from flext_observability.refusals.log import Refusal
from flext_observability.signals import Signal
from flext_observability.tasks import cancel
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!BIII")
PUT = 1
COUNTS = 2
ANSWER = 3
REFUSALS = 4
READY = 5
# A frame longer than this is a broken channel (bodies are at most server.max_body_bytes).
_MAX_FRAME = 1 << 31


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, int, Any, bytes]:
    op, rid, meta_len, body_len = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if meta_len + body_len > _MAX_FRAME:
        raise ConnectionError(f"frame of {meta_len + body_len} bytes")
    data = await reader.readexactly(meta_len + body_len)
    return op, rid, orjson.loads(data[:meta_len]), data[meta_len:]


def _frame(op: int, rid: int, meta: Any, *body: bytes) -> list[bytes]:
    encoded = orjson.dumps(meta)
    return [_HEADER.pack(op, rid, len(encoded), sum(map(len, body))), encoded, *body]


class IntakeServer:
    """The collector's end of one worker's channel: puts go to the intake."""

    def __init__(
        self, intake: Intake, telemetry: SelfTelemetry, memory: MemoryLimiter,
        retry_after: int,
    ) -> None:
        self._intake = intake
        self._telemetry = telemetry
        self._memory = memory
        self._retry_after = retry_after
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self, sock: socket.socket, on_ready: Callable[[], None] | None = None) -> None:
        """Until the worker closes its end (it exits) or the task is cancelled; `on_ready`
        when the worker is about to serve."""
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            while True:
                try:
                    op, rid, meta, body = await _read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if op == PUT:
                    task = asyncio.create_task(self._put(writer, rid, meta, body))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                elif op == COUNTS:
                    self._telemetry.add_counts(meta)
                elif op == READY and on_ready is not None:
                    on_ready()
                elif op == REFUSALS:
                    self._telemetry.refusals.extend(Refusal.from_dict(r) for r in meta)
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            writer.close()

    async def _put(self, writer: asyncio.StreamWriter, rid: int, meta: Any, body: bytes) -> None:
        answer = await self._answer(meta, body)
        queue = self._intake.queue
        answer["queue"] = [queue.total_items, queue.total_bytes]
        if not writer.is_closing():
            writer.writelines(_frame(ANSWER, rid, answer))

    async def _answer(self, meta: Any, body: bytes) -> dict[str, Any]:
        if self._memory.limited:
            return {"error": "closed", "reason": MEMORY_LIMIT,
                    "message": self._memory.message(self._retry_after),
                    "retry_after": self._retry_after}
        try:
            rejected = await self._intake.put(
                Signal(meta["signal"]), meta["encoding"], body, meta["items"]
            )
        except QueueFull as exc:
            return {"error": "queue_full", "limit": exc.limit, "retry_after": exc.retry_after}
        except QueueClosed as exc:
            return {"error": "closed", "message": str(exc)}
        except Inadmissible as exc:
            return {"error": "inadmissible", "reason": exc.reason,
                    "errors": [[e.index, e.field, e.message] for e in exc.errors]}
        except Exception:
            # A bug here must not leave the worker's request waiting forever.
            log.exception("ingest worker request failed")
            return {"error": "closed", "message": "the collector failed to queue the request"}
        if rejected.points:
            return {"rejected": [rejected.points, rejected.message, rejected.reasons]}
        return {}


@dataclass(slots=True)
class QueueView:
    """The queue's limits, and its levels as of the last answer (`processors.limits`)."""

    max_items: int
    max_bytes: int
    retry_after: int
    total_items: int = 0
    total_bytes: int = 0


class RemoteIntake:
    """The worker's end: `put()` as `Intake.put`, answered by the collector process."""

    def __init__(self, sock: socket.socket, queue: QueueView, on_lost: Callable[[], None]) -> None:
        self.queue = queue
        self._sock = sock
        self._on_lost = on_lost
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._lost = False

    async def start(self) -> None:
        reader, self._writer = await asyncio.open_connection(sock=self._sock)
        self._writer.writelines(_frame(READY, 0, None))
        self._reader_task = asyncio.create_task(self._read_answers(reader), name="intake-answers")

    async def shutdown(self) -> None:
        if self._writer is not None:
            self._writer.close()
        await cancel(self._reader_task)

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                _, rid, meta, _ = await _read_frame(reader)
                future = self._waiting.pop(rid, None)
                if future is not None and not future.done():
                    future.set_result(meta)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            self._lose()

    def _lose(self) -> None:
        if self._lost:
            return
        self._lost = True
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(QueueClosed("the collector process is gone"))
        self._waiting.clear()
        log.error("ingest worker lost the collector process; stopping")
        self._on_lost()

    async def put(
        self, signal: Signal, encoding: str, payload: bytes, items: int, decoded: Any = None
    ) -> Rejected:
        """Durable on return; raises QueueFull, QueueClosed or Inadmissible as `Intake.put`.
        (`decoded` stays here: the collector process unpacks the payload.)"""
        writer = self._writer
        if self._lost or writer is None:
            raise QueueClosed("the collector process is gone")
        rid = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        meta = {"signal": signal.value, "encoding": encoding, "items": items}
        try:
            writer.writelines(_frame(PUT, rid, meta, payload))
            await writer.drain()
        except (ConnectionError, OSError):
            self._waiting.pop(rid, None)
            self._lose()
            raise QueueClosed("the collector process is gone") from None
        answer = await future
        self.queue.total_items, self.queue.total_bytes = answer["queue"]
        error = answer.get("error")
        if error == "queue_full":
            raise QueueFull(answer["limit"], answer["retry_after"])
        if error == "closed":
            raise QueueClosed(answer["message"], answer.get("reason", "unavailable"),
                              answer.get("retry_after", 5))
        if error == "inadmissible":
            raise Inadmissible([ItemError(*e) for e in answer["errors"]], answer["reason"])
        rejected = answer.get("rejected")
        return NOTHING_REJECTED if rejected is None else Rejected(*rejected)

    def send_counts(self, deltas: list[tuple[str, dict[str, str], float]]) -> None:
        if deltas and not self._lost and self._writer is not None:
            self._writer.writelines(_frame(COUNTS, 0, deltas))

    def send_refusals(self, refusals: list[Refusal]) -> None:
        if refusals and not self._lost and self._writer is not None:
            self._writer.writelines(_frame(REFUSALS, 0, [r.as_dict() for r in refusals]))
