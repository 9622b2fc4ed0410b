"""Where accepted requests enter the queue: admission to the metric store, then the put.

Receivers in this process call `Intake.put`; with ingest workers (`server.workers`), the
workers' requests arrive here through `workers.ipc` and take the same path. Admission
decides names, types and series limits before the request is answered; what it lets in is
reserved in the store until the request is applied, so that concurrent requests are
judged together and nothing answered 2xx is refused later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson

from flext_observability.models.errors import ItemError
from flext_observability.models.wire import MetricsDigest, unpack_digest
from flext_observability.pipeline.queue import Queue
from flext_observability.signals import Signal

NATIVE_JSON = "native-json"
METRICS_DIGEST = "metrics-digest"
OTLP_PROTOBUF = "otlp-pb"


SERIES_LIMIT = "series_limit"


class RecordsAdmission(NamedTuple):
    """How the state native alerts or health reports go to admits them (its limit)."""

    reason: str  # what refused_items_total counts
    # records -> the items the state cannot take; the others are counted as held
    admit: Callable[[list[dict[str, Any]]], list[ItemError]]
    # records admitted that could not be queued after all: no longer counted
    release: Callable[[list[dict[str, Any]]], None]


class Inadmissible(Exception):
    """Items the state they go to could not hold (the Prometheus exporter: type_conflict,
    reserved_name, series_limit; the health tracker or the held alerts: their limit);
    nothing was queued. `reason` is what refused_items_total counts."""

    def __init__(self, errors: list[ItemError], reason: str = SERIES_LIMIT) -> None:
        super().__init__("; ".join(f"{e.index}: {e.message}" for e in errors))
        self.errors = errors
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rejected:
    """Data points of an OTLP metrics request that admission refused (not queued): how
    many, why (for the partial success) and how many for each reason."""

    points: int = 0
    message: str = ""
    reasons: dict[str, int] = field(default_factory=dict)


NOTHING_REJECTED = Rejected()


@dataclass(frozen=True, slots=True)
class Admitted:
    """An OTLP metrics request after admission: the payload holding the admitted points."""

    payload: bytes
    items: int
    rejected: Rejected
    reservation: Any


class Admission(Protocol):
    """The Prometheus exporter's side of admission."""

    def admit(self, metrics: MetricsDigest) -> Any:
        """The reservation of admitted native metrics; raises Inadmissible."""

    def admit_otlp(self, payload: bytes) -> Admitted: ...

    def hold(self, seq: int, reservation: Any) -> None: ...

    def release(self, seq: int) -> None: ...


class Intake:
    """`put()` as the queue's, with metrics admitted first. Raises Inadmissible, QueueFull
    or QueueClosed; returns once the request is durable, with the OTLP points refused."""

    def __init__(
        self, queue: Queue, admission: Admission | None,
        admit_records: dict[Signal, RecordsAdmission] | None = None,
    ) -> None:
        """`admit_records`: per signal of native JSON records, their admission."""
        self.queue = queue
        self._admission = admission
        self._admit_records = admit_records or {}

    async def put(
        self, signal: Signal, encoding: str, payload: bytes, items: int, decoded: Any = None
    ) -> Rejected:
        """`decoded`: native metrics' digest, unpacked from the payload when not given."""
        if encoding == NATIVE_JSON and signal in self._admit_records:
            await self._put_records(self._admit_records[signal], signal, payload, items, decoded)
            return NOTHING_REJECTED
        admission = self._admission
        if admission is None or signal is not Signal.METRICS:
            await self.queue.put(signal, encoding, payload, items, decoded)
            return NOTHING_REJECTED
        rejected = NOTHING_REJECTED
        if encoding == METRICS_DIGEST:
            if decoded is None:
                decoded = unpack_digest(payload)
            reservation = admission.admit(decoded)
        else:
            admitted = admission.admit_otlp(payload)
            rejected = admitted.rejected
            if not admitted.items:
                return rejected
            payload, items, reservation = admitted.payload, admitted.items, admitted.reservation
        # Nothing awaits between here and the queue numbering the request.
        seq = self.queue.next_seq
        admission.hold(seq, reservation)
        try:
            await self.queue.put(signal, encoding, payload, items, decoded)
        except BaseException:
            admission.release(seq)
            raise
        if not self.queue.reads_back_seq:
            # Read back under another seq (a log shared by instances): the reservation
            # ends here, and the series count once this instance applied them.
            admission.release(seq)
        return rejected

    async def _put_records(
        self, admission: RecordsAdmission, signal: Signal, payload: bytes, items: int,
        decoded: Any,
    ) -> None:
        records = orjson.loads(payload)
        errors = admission.admit(records)
        if errors:
            raise Inadmissible(errors, admission.reason)
        try:
            await self.queue.put(signal, NATIVE_JSON, payload, items, decoded)
        except BaseException:
            admission.release(records)
            raise
