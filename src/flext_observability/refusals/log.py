"""A bounded ring of the most recent refused requests, filled where refusals are counted.

Every refusal already goes through `flext_collector_refused_items_total`; that counter is
a `NotingCounter`, which also notes the (signal, reason, items) on the request being
served, if any (`recording()`, a context variable set by the receiver's front: the HTTP
middleware `refusals.middleware.RefusalRecorder`, or a gRPC call). When the request ends,
what was noted becomes one `Refusal` in the `RefusalLog`. Nothing of the payload and no
token is kept: the tenant, the route, the status, the reasons and counts, and the first
few field errors of the answer (index, field, message), each message cut short.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

# Field errors kept per refusal, and a message's length at most.
MAX_ERRORS = 5
MAX_MESSAGE = 300


@dataclass(slots=True)
class Pending:
    """What one request's refusals noted so far."""

    reasons: dict[str, float] = field(default_factory=dict)
    signal: str | None = None

    def note(self, signal: str, reason: str, items: float) -> None:
        self.signal = signal
        self.reasons[reason] = self.reasons.get(reason, 0.0) + items


_PENDING: ContextVar[Pending | None] = ContextVar("flext_refusal", default=None)


@contextmanager
def recording() -> Iterator[Pending]:
    """Note the refusals counted while the block runs (in this task and those it starts)."""
    pending = Pending()
    token = _PENDING.set(pending)
    try:
        yield pending
    finally:
        _PENDING.reset(token)


class NotingCounter(Counter):
    """A Counter labelled (signal, reason) whose increments are also noted on the request
    being recorded (`recording()`)."""

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        super().inc(amount, exemplar)
        pending = _PENDING.get()
        if pending is not None and self._labelvalues:
            signal, reason = self._labelvalues
            pending.note(signal, reason, amount)


def error_entry(index: int | None, field_name: str, message: str) -> dict[str, Any]:
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return {"index": index, "field": field_name, "message": message}


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused request (or the refused part of a partially accepted one)."""

    time: float
    tenant: str | None
    receiver: str
    signal: str
    status: int
    reasons: dict[str, float]
    errors: list[dict[str, Any]]

    @property
    def reason(self) -> str:
        """The reason that refused the most items (the first noted on a tie)."""
        return max(self.reasons, key=lambda name: self.reasons[name])

    @property
    def items(self) -> int:
        return int(sum(self.reasons.values()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time, "tenant": self.tenant, "receiver": self.receiver,
            "signal": self.signal, "status": self.status, "reason": self.reason,
            "items": self.items, "reasons": {k: int(v) for k, v in self.reasons.items()},
            "errors": self.errors,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Refusal:
        return cls(
            float(data["time"]), data["tenant"], str(data["receiver"]), str(data["signal"]),
            int(data["status"]), {str(k): float(v) for k, v in data["reasons"].items()},
            list(data["errors"]),
        )


def refusal_of(
    pending: Pending, tenant: str | None, receiver: str, status: int,
    errors: list[dict[str, Any]],
) -> Refusal | None:
    """The refusal a recorded request amounts to; None when nothing was refused."""
    if not pending.reasons or pending.signal is None:
        return None
    return Refusal(time.time(), tenant, receiver, pending.signal, status,
                   dict(pending.reasons), errors[:MAX_ERRORS])


class RefusalLog:
    """The last `capacity` refusals. An ingest worker's log also keeps what it has not yet
    sent to the collector process (`forward=True`, `take()`)."""

    def __init__(self, capacity: int, forward: bool = False) -> None:
        self._ring: deque[Refusal] = deque(maxlen=capacity)
        self._outbox: deque[Refusal] | None = deque(maxlen=capacity) if forward else None

    @property
    def capacity(self) -> int:
        return self._ring.maxlen or 0

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, refusal: Refusal) -> None:
        self._ring.append(refusal)
        if self._outbox is not None:
            self._outbox.append(refusal)

    def extend(self, refusals: Iterable[Refusal]) -> None:
        for refusal in refusals:
            self.add(refusal)

    def take(self) -> list[Refusal]:
        """What was added since the last take (forwarding logs only)."""
        if not self._outbox:
            return []
        taken = list(self._outbox)
        self._outbox.clear()
        return taken

    def recent(
        self,
        limit: int,
        *,
        visible_to: str | None = None,
        tenant: str | None = None,
        signal: str | None = None,
        reason: str | None = None,
    ) -> list[Refusal]:
        """Newest first. `visible_to` (with authentication on): that tenant's refusals and
        those refused before any tenant was known (401s, which name no tenant)."""
        found = []
        for refusal in reversed(self._ring):
            if visible_to is not None and refusal.tenant not in (visible_to, None):
                continue
            if tenant is not None and refusal.tenant != tenant:
                continue
            if signal is not None and refusal.signal != signal:
                continue
            if reason is not None and reason not in refusal.reasons:
                continue
            found.append(refusal)
            if len(found) >= limit:
                break
        return found
