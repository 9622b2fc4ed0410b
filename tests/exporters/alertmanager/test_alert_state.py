"""AlertState identity, versions, retention and snapshot; the Alertmanager API v2 form."""

import orjson
import pytest

from flext_observability.exporters.alertmanager.exporter import invalid_reason, to_api
from flext_observability.exporters.alertmanager.state import AlertState, HeldAlert
from flext_observability.models.native import Alert

T0 = 1_700_000_000.0


class Wall:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def alert(status="firing", **extra):
    fields = {"name": "DiskFull", "severity": "critical", "service": "db", "status": status,
              "summary": "disk full", **extra}
    return Alert.model_validate_json(orjson.dumps(fields)).model_dump(mode="json")


def test_identity_is_the_label_set_and_resolved_moves_an_alert():
    wall = Wall()
    state = AlertState(wall_clock=wall)
    assert state.apply(alert(labels={"disk": "sda"}))
    assert state.apply(alert(labels={"disk": "sdb"}))
    assert len(state.firing) == 2
    wall.now += 30
    assert state.apply(alert("resolved", labels={"disk": "sda"}))
    assert len(state.firing) == 1
    (resolved,) = state.resolved.values()
    assert (resolved.starts_at, resolved.ends_at) == (T0, T0 + 30)
    assert resolved.annotations == {"summary": "disk full"}


def test_repeats_do_not_count_as_changes():
    wall = Wall()
    state = AlertState(wall_clock=wall)
    state.apply(alert())
    version = state.version
    wall.now += 60
    assert not state.apply(alert())
    state.apply(alert("resolved"))
    resolved_version = state.version
    wall.now += 60
    assert not state.apply(alert("resolved"))  # the first resolve time is kept
    assert state.version == resolved_version > version
    assert state.snapshot() == []


def test_resolved_alerts_are_forgotten_after_the_retention():
    wall = Wall()
    state = AlertState(wall_clock=wall, resolved_retention=900)
    state.apply(alert("resolved"))
    wall.now += 899
    state.expire()
    assert len(state.resolved) == 1
    wall.now += 2
    state.expire()
    assert state.resolved == {}


def rows(changes):
    return [(key, value) for key, value in changes.items() if value is not None]


def test_the_changed_alerts_are_state_rows_that_restore_the_state():
    wall = Wall()
    state = AlertState(wall_clock=wall)
    notified = []
    state.subscribe(lambda: notified.append(state.version))
    state.publish([alert(generator_url="http://rules/1"), alert(name="Other")])
    state.publish([alert("resolved", name="Other")])
    assert notified == [2, 3]
    saved = state.changes()
    assert len(saved) == 2
    assert state.changes() == {}

    loaded = AlertState(wall_clock=wall)
    loaded.restore(rows(saved))
    assert loaded.version == 3
    assert [h.labels["alertname"] for h in loaded.firing.values()] == ["DiskFull"]
    assert [h.labels["alertname"] for h in loaded.resolved.values()] == ["Other"]
    assert next(iter(loaded.firing.values())).generator_url == "http://rules/1"

    wall.now += 901
    loaded.publish([alert(name="Third")])
    gone = loaded.changes()
    assert sorted(v is None for v in gone.values()) == [False, True]  # Other expired


def of(tenant, name):
    """A native alert as the receiver queues it with authentication on."""
    return {**alert(name=name, labels={"tenant": tenant}), "tenant": tenant}


def test_the_alert_limit_is_per_tenant_and_counts_restored_and_expired_alerts():
    wall = Wall()
    state = AlertState(wall_clock=wall, resolved_retention=900, max_alerts=2)
    state.publish([of("a", "One"), of("a", "Two")])
    errors = state.admit([of("a", "Three")])
    assert [(e.index, e.field) for e in errors] == [(0, "labels")]
    assert "2 alerts of this tenant are held" in errors[0].message
    assert "max_alerts=2 allows per tenant" in errors[0].message
    assert state.admit([of("b", "One"), of("b", "Two")]) == []  # b is not kept out by a
    assert state.admit([of("b", "Three")])  # admitted ones count
    assert state.admit([of("a", "One")]) == []  # held already: not a new one
    # A label alone does not make a tenant (authentication off: the one tenant "").
    state.publish([alert(name="Untagged", labels={"tenant": "a"})])
    assert state.admit([alert(name="Other", labels={"tenant": "c"})]) == []

    restored = AlertState(wall_clock=wall, resolved_retention=900, max_alerts=2)
    restored.restore(rows(state.changes()))
    assert restored.admit([of("a", "Three")])
    restored.publish([{**of("a", "One"), "status": "resolved"}])
    assert restored.admit([of("a", "Three")])  # resolved alerts count until forgotten
    wall.now += 901
    assert restored.admit([of("a", "Three")]) == []


def held(**changes):
    fields = {"labels": {"alertname": "A", "severity": "info", "service": "s"},
              "annotations": {"summary": "x"}, "starts_at": T0, "ends_at": None,
              "generator_url": "", "updated": T0, **changes}
    return HeldAlert(**fields)


def test_the_api_form_has_rfc3339_times_and_the_generator_url_when_known():
    assert to_api(held(), T0 + 240) == {
        "labels": {"alertname": "A", "severity": "info", "service": "s"},
        "annotations": {"summary": "x"},
        "startsAt": "2023-11-14T22:13:20.000000Z",
        "endsAt": "2023-11-14T22:17:20.000000Z",
    }
    assert to_api(held(generator_url="http://g"), T0)["generatorURL"] == "http://g"


@pytest.mark.parametrize(("changes", "reason"), [
    ({}, None),
    ({"annotations": {"runbook-url": "http://r"}}, "invalid annotation name(s) 'runbook-url'"),
    ({"ends_at": T0 - 1}, "ends_at is before starts_at"),
])
def test_alerts_alertmanager_would_refuse_are_recognised(changes, reason):
    assert invalid_reason(held(**changes)) == reason
