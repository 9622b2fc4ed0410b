"""The native metrics hot path: JSON bytes to `WireMetric` structs in one pass in C.

The pydantic `Metric` model holds the rules. This decoder accepts a subset of what it
accepts, with the same values (tests/models/test_wire.py compares the two on generated
input): msgspec checks types, lengths and bounds while it parses; the patterns of names
and label names are checked once per distinct string and remembered; the rules across
fields are `metric_rules`' own, written for a struct. Whatever it does not accept goes to
the model, which accepts it or says why; so a request costs the model's price only when
it is refused or uses a rare form (an RFC 3339 or seconds timestamp).
"""

from __future__ import annotations

import re
from array import array
from hashlib import blake2b
from itertools import pairwise
from typing import Annotated, Literal

import msgspec
from pydantic import TypeAdapter

from flext_observability.models.native import (
    LABEL_NAME_PATTERN,
    METRIC_NAME_PATTERN,
    RESERVED_LABELS,
    Metric,
    label_collision,
)
from flext_observability.models.times import MAX_NANOS, MIN_NANOS

METRICS = TypeAdapter(list[Metric])
Short = Annotated[str, msgspec.Meta(max_length=200)]


class WireMetric(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """`Metric`'s fields, without the checks msgspec cannot make (patterns, rules).
    Not tracked by the garbage collector (`gc=False`): a decoded item holds no cycle, and
    a batch of them costs a third less to make and to free."""

    name: Short
    type: Literal["counter", "gauge", "histogram"]
    value: float
    service: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    instance: Short = ""
    labels: dict[Short, Annotated[str, msgspec.Meta(max_length=2048)]] = {}
    unit: Annotated[str, msgspec.Meta(max_length=64)] = ""
    description: Annotated[str, msgspec.Meta(max_length=8192)] = ""
    buckets: list[float] | None = None
    # Integer nanoseconds only: seconds and RFC 3339 strings take the model's path.
    timestamp: Annotated[int, msgspec.Meta(ge=MIN_NANOS, le=MAX_NANOS)] | None = None


_DECODE_MANY = msgspec.json.Decoder(list[WireMetric]).decode
_DECODE_ONE = msgspec.json.Decoder(WireMetric).decode
_encode = msgspec.json.Encoder().encode

# Distinct names seen valid; bounded so that a stream of new names cannot grow them.
_NAMES_HELD = 100_000
_metric_name = re.compile(METRIC_NAME_PATTERN).fullmatch
_label_name = re.compile(LABEL_NAME_PATTERN).fullmatch
_good_names: set[str] = set()
_good_label_names: set[str] = set()  # without a dot
_good_dotted_names: set[str] = set()  # with dots, which may collide once translated


def _name_ok(name: str) -> bool:
    """Checks a name not seen valid before, and remembers it when valid."""
    if _metric_name(name) is None:
        return False
    if len(_good_names) >= _NAMES_HELD:
        _good_names.clear()
    _good_names.add(name)
    return True


def _label_name_ok(key: str) -> bool:
    """Checks a label name not seen valid before, and remembers it when valid."""
    if key in RESERVED_LABELS or _label_name(key) is None:
        return False
    held = _good_dotted_names if "." in key else _good_label_names
    if len(held) >= _NAMES_HELD:
        held.clear()
    held.add(key)
    return True


def _rules_ok(items: list[WireMetric]) -> bool:
    """Every check of the model that msgspec did not make, for every item. The common
    batch (names and label names seen valid, no buckets, no value under zero) is seen with
    one look at an item and the least of its values; any other goes item by item."""
    good_names = _good_names
    known_labels = _good_label_names.issuperset
    for m in items:
        if m.buckets is not None or m.name not in good_names or not known_labels(m.labels):
            return _each_rules_ok(items)
    # msgspec refuses inf and nan (out of range, not JSON); a counter may not go under 0
    return not items or min([m.value for m in items]) >= 0 or _each_rules_ok(items)


def _each_rules_ok(items: list[WireMetric]) -> bool:
    """`_rules_ok`, item by item."""
    good_names, good_label_names, good_dotted = _good_names, _good_label_names, _good_dotted_names
    for m in items:
        value = m.value
        if value - value != 0:  # inf or nan
            return False
        kind = m.type
        if kind == "counter" and value < 0:
            return False
        buckets = m.buckets
        if buckets is not None and (
            kind != "histogram"
            or any(b - b != 0 for b in buckets)
            or any(b >= c for b, c in pairwise(buckets))
        ):
            return False
        if m.name not in good_names and not _name_ok(m.name):
            return False
        dotted = False
        for key in m.labels:
            if key not in good_label_names:
                if key not in good_dotted and not _label_name_ok(key):
                    return False
                dotted = True
        if dotted and label_collision(m.labels) is not None:
            return False
    return True


def decode_metrics(body: bytes, batch: bool) -> list[WireMetric] | None:
    """The items of a native metrics body, or None when the model must decide."""
    try:
        items = _DECODE_MANY(body) if batch else [_DECODE_ONE(body)]
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None  # the model says why (invalid UTF-8 is its `json_invalid`)
    return items if _rules_ok(items) else None


def from_models(metrics: list[Metric]) -> list[WireMetric]:
    """Items the model accepted (the slow path), in the hot path's form."""
    return [
        WireMetric(**m.model_dump(exclude_defaults=True, mode="json")) for m in metrics
    ]


class Run(msgspec.Struct, array_like=True):
    """Consecutive items of one family: same name, type, description, unit and buckets."""

    name: str
    type: str
    description: str
    unit: str
    buckets: list[float] | None
    count: int


class MetricsDigest(msgspec.Struct, array_like=True, dict=True):
    """Validated native metrics in the form the Prometheus exporter applies cheaply: runs of
    one family, and per item its series key (`series_key`) and value. Packed (msgpack), it
    is what the queue stores for a native metrics request: less than half the size of the
    JSON, and applied after a restart without validating again. (An item's `timestamp` is
    accepted and not kept: a sample is exposed at the time it was received.) The keys, once
    split, are kept with it in memory (not packed) for the next reader in this process."""

    runs: list[Run]
    keys: bytes  # the items' series keys, joined by b"\n" (JSON escapes a newline)
    values: bytes  # the items' values, native doubles

    @property
    def items(self) -> int:
        return sum(run.count for run in self.runs)

    def series(self) -> list[bytes]:
        split: list[bytes] | None = self.__dict__.get("_series")
        if split is None:
            split = self.__dict__["_series"] = self.keys.split(b"\n")
        return split

    def numbers(self) -> array[float]:
        values = array("d")
        values.frombytes(self.values)
        return values

    def fingerprint(self) -> bytes:
        """A hash of the series of every run (family name, type and series keys, not the
        values): requests that update the same series have the same fingerprint."""
        found: bytes | None = self.__dict__.get("_fingerprint")
        if found is None:
            made = blake2b(self.keys, digest_size=16)
            for run in self.runs:
                made.update(f"\n{run.name}\n{run.type}\n{run.count}".encode())
            found = self.__dict__["_fingerprint"] = made.digest()
        return found


def series_key(key: bytes) -> tuple[str, str, dict[str, str]]:
    """(service, instance, labels) of a digest's series key."""
    service, instance, labels = msgspec.json.decode(key)
    return service, instance, labels


def digest(items: list[WireMetric]) -> MetricsDigest:
    runs: list[Run] = []
    run: Run | None = None
    first = 0
    for index, m in enumerate(items):
        if run is None or m.name != run.name or m.type != run.type or m.buckets != run.buckets:
            if run is not None:
                run.count = index - first
            first = index
            run = Run(m.name, m.type, m.description, m.unit, m.buckets, 0)
            runs.append(run)
    if run is not None:
        run.count = len(items) - first
    keys = [_encode((m.service, m.instance, m.labels)) for m in items]
    made = MetricsDigest(
        runs, b"\n".join(keys), array("d", [m.value for m in items]).tobytes()
    )
    made.__dict__["_series"] = keys
    return made


pack_digest = msgspec.msgpack.Encoder().encode
unpack_digest = msgspec.msgpack.Decoder(MetricsDigest).decode
