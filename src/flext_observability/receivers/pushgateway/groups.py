"""The pushed groups: admission (the Pushgateway's consistency checks), application of
queued pushes, expiry, exposition on /metrics and durable state.

A push is judged against the groups as they will be once every push admitted before it is
applied (the `view`: the applied groups with the pushes still in the queue folded in), so
that concurrent pushes are judged together and a push answered 200 is never refused when
it is applied. Applied pushes change `groups`, which /metrics shows and which the
checkpoints persist (one state row per group, `PushState`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client.core import Metric

from flext_observability.pipeline.queue import StateChanges
from flext_observability.receivers.pushgateway.body import (
    PUSH_FAILURE_TIME,
    PUSH_TIME,
    PushedFamily,
    decode_families,
    encode_families,
    parse_text,
)
from flext_observability.receivers.pushgateway.path import GroupKey

PUT = "put"
POST = "post"
DELETE = "delete"
FAIL = "fail"

# A family's kind, the family (its series are read only when another group holds its name)
# and its names, as the view holds them.
_Shape = tuple[str, PushedFamily, frozenset[str]]


class Inconsistent(ValueError):
    """A push the Pushgateway would refuse as inconsistent with the other groups (400)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(slots=True)
class Push:
    """One queued change of a group: `op` is PUT, POST, DELETE or FAIL (a refused push:
    only the group's push_failure_time_seconds changes). `body`: the text the families were
    read from; queued as it came (half the size of the families), read again only where
    the push is applied without this object (after a restart)."""

    op: str
    key: GroupKey
    time: float
    families: dict[str, PushedFamily] = field(default_factory=dict)
    body: bytes | None = None

    def encode(self) -> bytes:
        header = {"op": self.op, "key": [list(pair) for pair in self.key], "time": self.time}
        if self.body is not None:
            return orjson.dumps({**header, "text": True}) + b"\n" + self.body
        return orjson.dumps({**header, "families": encode_families(self.families)})

    @classmethod
    def decode(cls, payload: bytes) -> Push:
        header, _, body = payload.partition(b"\n")
        data = orjson.loads(header)
        key: GroupKey = tuple((k, v) for k, v in data["key"])
        if data.get("text"):
            return cls(data["op"], key, float(data["time"]), parse_text(body, dict(key)), body)
        return cls(data["op"], key, float(data["time"]), decode_families(data["families"]))

    @property
    def samples(self) -> int:
        return sum(len(f.samples) for f in self.families.values())


@dataclass(slots=True)
class Group:
    key: GroupKey
    families: dict[str, PushedFamily] = field(default_factory=dict)
    push_time: float = 0.0
    failure_time: float = 0.0

    def last_change(self) -> float:
        return max(self.push_time, self.failure_time)


def _shapes(families: dict[str, PushedFamily]) -> dict[str, _Shape]:
    return {name: (f.kind, f, f.names()) for name, f in families.items()}


def _fold(shapes: dict[str, _Shape], push: Push) -> dict[str, _Shape]:
    if push.op == DELETE:
        return {}
    if push.op == PUT:
        return _shapes(push.families)
    if push.op == POST:
        return {**shapes, **_shapes(push.families)}
    return shapes


class PushGroups:
    """Every pushed group, keyed by its grouping labels. `native_problem(base, kind)` says
    why the metric store would not let a family of that name be exposed beside its own
    (None when it would); `ttl`: seconds after its last change a group is removed."""

    def __init__(
        self,
        native_problem: Callable[[str, str], tuple[str, str] | None],
        ttl: float | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._native_problem = native_problem
        self.ttl = ttl
        self._wall = wall_clock
        self.groups: dict[GroupKey, Group] = {}
        # Pushes admitted and not yet applied, by queue sequence number (in order).
        self._pending: dict[int, Push] = {}
        self._view: dict[GroupKey, dict[str, _Shape]] = {}
        # Exposition name -> the groups of the view that hold it, with its kind there.
        self._owners: dict[str, dict[GroupKey, str]] = {}
        self.dirty: set[GroupKey] = set()

    def now(self) -> float:
        return self._wall()

    def exposes(self, name: str) -> str | None:
        """The kind of the pushed family exposed as `name`; None when none is."""
        owners = self._owners.get(name)
        return next(iter(owners.values())) if owners else None

    def admit(self, push: Push) -> None:
        """Raise Inconsistent when the push could not be exposed beside the other groups
        (as they will be once the pushes admitted before it are applied) and the store."""
        if push.op not in (PUT, POST):
            return
        for name, family in push.families.items():
            problem = self._native_problem(family.base, family.kind)
            if problem is not None:
                raise Inconsistent(*problem)
            for held in family.names():
                for key, kind in self._owners.get(held, {}).items():
                    if key != push.key and kind != family.kind:
                        raise Inconsistent(
                            "type_conflict",
                            f"pushed metric {held} is a {family.kind}, but the group "
                            f"{_key_text(key)} holds it as a {kind}",
                        )
            for key in self._owners.get(name, {}):
                shape = self._view[key].get(name)
                if key != push.key and shape is not None and family.series() & shape[1].series():
                    raise Inconsistent(
                        "invalid",
                        f"a series of {name} was collected before with the same name and "
                        f"label values, in the group {_key_text(key)}",
                    )

    def hold(self, seq: int, push: Push) -> None:
        """The push is queued as `seq`: judge the next ones with it."""
        self._pending[seq] = push
        self._set_view(push.key, _fold(self._current(push.key), push))

    def discard(self, seq: int) -> None:
        """The push held as `seq` could not be queued after all."""
        push = self._pending.pop(seq, None)
        if push is not None:
            self._set_view(push.key, self._folded(push.key))

    def apply(self, seq: int, push: Push) -> None:
        """Apply a queued push (again, after a restart: applying is idempotent)."""
        held = self._pending.pop(seq, None) is not None
        group = self.groups.get(push.key)
        if push.op == DELETE:
            if group is not None:
                del self.groups[push.key]
        else:
            if group is None:
                group = self.groups[push.key] = Group(push.key)
            if push.op == FAIL:
                group.failure_time = push.time
            else:
                if push.op == PUT:
                    group.families = dict(push.families)
                else:
                    group.families.update(push.families)
                group.push_time = push.time
        self.dirty.add(push.key)
        if not held:
            self._set_view(push.key, self._folded(push.key))

    def expire(self) -> None:
        """Remove the groups unchanged for `ttl` seconds (none queued for a change)."""
        if self.ttl is None:
            return
        deadline = self._wall() - self.ttl
        pending = {p.key for p in self._pending.values()}
        for key in [k for k, g in self.groups.items() if g.last_change() < deadline]:
            if key in pending:
                continue
            del self.groups[key]
            self.dirty.add(key)
            self._set_view(key, {})

    def restore(self, groups: list[Group]) -> None:
        for group in groups:
            self.groups[group.key] = group
            self._set_view(group.key, _shapes(group.families))

    def _current(self, key: GroupKey) -> dict[str, _Shape]:
        return self._view.get(key, {})

    def _folded(self, key: GroupKey) -> dict[str, _Shape]:
        """The group's families once its queued pushes are applied."""
        group = self.groups.get(key)
        shapes = _shapes(group.families) if group is not None else {}
        for push in self._pending.values():
            if push.key == key:
                shapes = _fold(shapes, push)
        return shapes

    def _set_view(self, key: GroupKey, shapes: dict[str, _Shape]) -> None:
        for _, _, names in self._view.get(key, {}).values():
            for name in names:
                owners = self._owners[name]
                owners.pop(key, None)
                if not owners:
                    del self._owners[name]
        if shapes:
            self._view[key] = shapes
            for kind, _, names in shapes.values():
                for name in names:
                    self._owners.setdefault(name, {})[key] = kind
        else:
            self._view.pop(key, None)

    def collect(self) -> Iterator[Metric]:
        """prometheus_client collector protocol: every group's families, merged by name,
        then push_time_seconds and push_failure_time_seconds of every group."""
        self.expire()
        merged: dict[str, Metric] = {}
        for group in self.groups.values():
            for name, family in group.families.items():
                metric = merged.get(name)
                if metric is None:
                    metric = merged[name] = Metric(
                        family.base, family.help or _default_help(name), family.kind
                    )
                elif not metric.documentation and family.help:
                    metric.documentation = family.help
                for sample_name, labels, value in family.samples:
                    metric.add_sample(sample_name, dict(labels), value)
        yield from merged.values()
        if not self.groups:
            return
        pushed = Metric(PUSH_TIME, "Last Unix time when changing this group in the "
                        "Pushgateway succeeded.", "gauge")
        failed = Metric(PUSH_FAILURE_TIME, "Last Unix time when changing this group in the "
                        "Pushgateway failed.", "gauge")
        for group in self.groups.values():
            group_labels = dict(group.key)
            group_labels.setdefault("instance", "")
            pushed.add_sample(PUSH_TIME, group_labels, group.push_time)
            failed.add_sample(PUSH_FAILURE_TIME, group_labels, group.failure_time)
        yield pushed
        yield failed


def _default_help(name: str) -> str:
    return f"Metric {name} pushed to /metrics/job/..."


def _key_text(key: GroupKey) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in key) + "}"


class PushState:
    """`StatefulSink` for the pushed groups: a row per changed group, its whole content."""

    def __init__(self, groups: PushGroups) -> None:
        self.groups = groups

    def changes(self, limit: int | None = None) -> StateChanges:
        groups = self.groups
        groups.expire()
        rows: StateChanges = {}
        taken = list(groups.dirty) if limit is None else list(groups.dirty)[:limit]
        for key in taken:
            group = groups.groups.get(key)
            rows[orjson.dumps([list(pair) for pair in key])] = None if group is None else (
                orjson.dumps({
                    "push_time": group.push_time, "failure_time": group.failure_time,
                    "families": encode_families(group.families),
                })
            )
        groups.dirty.difference_update(taken)
        return rows

    def restore(self, rows: list[tuple[bytes, bytes]]) -> None:
        """The groups as last checkpointed; those past the ttl go at the next checkpoint."""
        restored = []
        for raw_key, raw_value in rows:
            key: GroupKey = tuple((k, v) for k, v in orjson.loads(raw_key))
            data: dict[str, Any] = orjson.loads(raw_value)
            restored.append(Group(
                key, decode_families(data["families"]), float(data["push_time"]),
                float(data["failure_time"]),
            ))
        self.groups.restore(restored)
        self.groups.dirty.clear()
