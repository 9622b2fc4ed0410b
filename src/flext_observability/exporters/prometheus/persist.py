"""The MetricStore as state rows beside the queue cursor (`pipeline.consumer.Checkpoints`).

One row per series: the key is `["<family>", [[label, value], ...]]`, the value
`[kind, help, unit, updated, time_ns, ...]` followed by the series' numbers (a scalar's
value; a histogram's bounds, bucket counts, sum and count; a summary's quantiles, sum and
count), all JSON. `updated` is stored as a Unix time, so that expiry counts the time the
collector was down: a series idle past `metric_expiration` is not restored. Numbers that
JSON cannot hold (NaN, ±Inf) are stored as their names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from flext_observability.exporters.prometheus.store import (
    Family,
    Histogram,
    LabelKey,
    MetricStore,
    Scalar,
    Summary,
)
from flext_observability.pipeline.queue import StateChanges

Number = float | str


def _out(value: float) -> Number:
    return value if value - value == 0 else repr(value)


def _outs(values: tuple[float, ...] | list[float]) -> list[Number]:
    return [_out(v) for v in values]


def _ins(values: list[Number]) -> list[float]:
    return [float(v) for v in values]


def encode_key(name: str, key: LabelKey) -> bytes:
    return orjson.dumps((name, key))


def encode_series(family: Family, series: Scalar | Histogram | Summary, updated: float) -> bytes:
    head = [family.kind, family.help, family.unit, updated, series.time_ns]
    if isinstance(series, Scalar):
        return orjson.dumps([*head, _out(series.value)])
    if isinstance(series, Histogram):
        return orjson.dumps([
            *head, _outs(series.bounds), _outs(series.counts), _out(series.sum),
            _out(series.count),
        ])
    quantiles = [[_out(q), _out(v)] for q, v in series.quantiles]
    return orjson.dumps([*head, quantiles, _out(series.sum), _out(series.count)])


def decode_series(kind: str, updated: float, time_ns: int, rest: list[Any]) -> (
    Scalar | Histogram | Summary
):
    if kind == "histogram":
        bounds, counts, total, count = rest
        return Histogram(
            tuple(_ins(bounds)), _ins(counts), float(total), float(count),
            updated, time_ns,
        )
    if kind == "summary":
        quantiles, total, count = rest
        return Summary(
            tuple((float(q), float(v)) for q, v in quantiles),
            float(total), float(count), updated, time_ns,
        )
    (value,) = rest
    return Scalar(float(value), updated, time_ns)


class StoreState:
    """`StatefulSink` for the MetricStore: its changed series as rows, and back."""

    def __init__(self, store: MetricStore, wall_clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._wall = wall_clock

    def changes(self, limit: int | None = None) -> StateChanges:
        """The series changed or expired since the last call, taken now: at most `limit`
        (the others stay for the next call). (Expiry is left to the scrapes: a series that
        expired unseen is dropped at restore.)"""
        store = self.store
        rows: StateChanges = {}
        offset = self._wall() - store.now()

        def take(name: str, family: Family | None, key: LabelKey) -> None:
            series = None if family is None else family.series.get(key)
            rows[encode_key(name, key)] = (
                None if family is None or series is None
                else encode_series(family, series, series.updated + offset)
            )

        removed = store.removed
        while removed and len(rows) != limit:
            name, key = removed.pop()
            take(name, store.families.get(name), key)  # it may be back since
        for name, family in store.families.items():
            dirty = family.dirty
            while dirty and len(rows) != limit:
                take(name, family, dirty.pop())
            if len(rows) == limit:
                break
        return rows

    def restore(self, rows: list[tuple[bytes, bytes]]) -> None:
        """Rebuild the store from its rows (before the first record); the rows of series
        that expired while the collector was down are deleted at the next checkpoint."""
        store = self.store
        offset = self._wall() - store.now()
        deadline = self._wall() - store.expiration
        for raw_key, raw_value in rows:
            name, labels = orjson.loads(raw_key)
            key: LabelKey = tuple((label, value) for label, value in labels)
            kind, help_text, unit, updated, time_ns, *rest = orjson.loads(raw_value)
            if updated < deadline:
                store.removed.add((name, key))
                continue
            family = store.family(name, kind, help_text, unit)
            store.restore(family, key, decode_series(kind, updated - offset, time_ns, rest))
        for family in store.families.values():
            family.dirty.clear()
