"""The pushed groups without a process: pushes admitted and not yet applied are judged
together, a push that could not be queued is forgotten, a replay after a restart applies
the same pushes again to the same result, and the state rows give the groups back."""

from __future__ import annotations

import pytest

from flext_observability.receivers.pushgateway.body import parse_text
from flext_observability.receivers.pushgateway.groups import (
    DELETE,
    POST,
    PUT,
    Inconsistent,
    Push,
    PushGroups,
    PushState,
)


def make_push(op: str, job: str, body: str = "") -> Push:
    labels = {"job": job}
    return Push(op, (("job", job),), 1700000000.0, parse_text(body.encode(), labels),
                body.encode() if op in (PUT, POST) else None)


def new_groups(clock: list[float] | None = None, ttl: float | None = None) -> PushGroups:
    now = clock or [1700000000.0]
    return PushGroups(lambda base, kind: None, ttl, wall_clock=lambda: now[0])


def test_a_queued_push_counts_before_it_is_applied():
    groups = new_groups()
    counter = make_push(PUT, "a", "# TYPE x counter\nx 1\n")
    groups.admit(counter)
    groups.hold(1, counter)
    gauge = make_push(PUT, "b", "# TYPE x gauge\nx 1\n")
    with pytest.raises(Inconsistent, match="counter"):
        groups.admit(gauge)
    # Not queued after all: forgotten, and the gauge may come.
    groups.discard(1)
    groups.admit(gauge)


def test_the_same_group_may_replace_its_types_and_a_delete_frees_the_name():
    groups = new_groups()
    first = make_push(PUT, "a", "# TYPE x counter\nx 1\n")
    groups.hold(1, first)
    groups.apply(1, first)
    groups.admit(make_push(PUT, "a", "# TYPE x gauge\nx 2\n"))
    with pytest.raises(Inconsistent):
        groups.admit(make_push(POST, "b", "# TYPE x gauge\nx 2\n"))
    delete = make_push(DELETE, "a")
    groups.hold(2, delete)
    groups.admit(make_push(POST, "b", "# TYPE x gauge\nx 2\n"))


def test_replay_and_state_rows_give_the_same_groups():
    groups = new_groups()
    pushes = [make_push(PUT, "a", "x 1\ny 2\n"), make_push(POST, "a", "y 3\nz NaN\n"),
              make_push(PUT, "b", "w 1\n"), make_push(DELETE, "b")]
    for seq, push in enumerate(pushes, 1):
        groups.hold(seq, push)
        groups.apply(seq, push)
    state = PushState(groups)
    rows = [(key, value) for key, value in state.changes().items() if value is not None]
    restored = new_groups()
    PushState(restored).restore(rows)
    # A restart replays what came after the checkpoint: the same result.
    for seq, push in enumerate(pushes[1:], 2):
        restored.apply(seq, Push.decode(push.encode()))
    for got in (groups, restored):
        assert list(got.groups) == [(("job", "a"),)]
        group = got.groups[(("job", "a"),)]
        assert sorted(group.families) == ["x", "y", "z"]
        assert group.families["y"].samples[0][2] == 3


def test_groups_expire_after_the_ttl_unless_a_push_is_queued():
    clock = [1700000000.0]
    groups = new_groups(clock, ttl=60)
    push = make_push(PUT, "a", "x 1\n")
    groups.hold(1, push)
    groups.apply(1, push)
    clock[0] += 61
    queued = make_push(POST, "a", "y 1\n")
    groups.hold(2, queued)
    groups.expire()
    assert (("job", "a"),) in groups.groups
    groups.discard(2)
    groups.expire()
    assert groups.groups == {}
    assert PushState(groups).changes() == {b'[["job","a"]]': None}


def test_a_push_is_queued_as_its_text_and_read_back_as_the_same_families():
    push = make_push(PUT, "a", '# TYPE x counter\nx{p="1"} 1\ny NaN\n')
    queued = push.encode()
    assert queued.endswith(push.body)
    # Rows queued before, with the families themselves, are read back as well.
    with_families = Push(push.op, push.key, push.time, push.families).encode()
    for payload in (queued, with_families):
        again = Push.decode(payload)
        assert (again.op, again.key, again.time) == (push.op, push.key, push.time)
        assert shown(again) == shown(push)


def shown(push: Push) -> str:
    """The families as /metrics shows them (values as floats; repr: NaN equal to itself)."""
    return repr([(f.name, f.base, f.kind, f.help, f.declared,
                  [(s, labels, float(v)) for s, labels, v in f.samples])
                 for f in push.families.values()])
