"""The MetricStore's series as state rows and back (in process; the daemon's restarts are
in test_persistence)."""

import math

from flext_observability.exporters.prometheus.persist import StoreState
from flext_observability.exporters.prometheus.store import MetricStore
from helpers.clock import Clock


def make(monotonic, wall, expiration=300.0):
    store = MetricStore(100, 100, expiration, Clock(monotonic), max_series_per_service=100)
    return store, StoreState(store, Clock(wall))


def test_every_kind_of_series_round_trips_with_its_expiry_time():
    store, state = make(50.0, 1_000_000.0)
    counter = store.family("jobs", "counter", "Jobs done", "")
    store.add(counter, (("job", "a"),), 2.0, 40.0)
    gauge = store.family("temp", "gauge")
    store.set(gauge, (("job", "a"), ("room", "1")), math.nan, 50.0)
    store.set(gauge, (("job", "b"),), -math.inf, 50.0)
    histogram = store.family("latency", "histogram", "", "seconds")
    for value in (0.2, 3.0, 30.0):
        store.observe(histogram, (("job", "a"),), value, (1.0, 10.0), 45.0)
    summary = store.family("size", "summary")
    store.set_summary(summary, (("job", "c"),), ((0.5, 1.0), (0.99, math.inf)), 9.0, 3.0, 50.0)
    rows = state.changes()
    assert len(rows) == 5
    assert state.changes() == {}

    restored, restored_state = make(7.0, 1_000_100.0)  # 100 s later, another process
    restored_state.restore([(k, v) for k, v in rows.items() if v is not None])
    assert restored.series_count == 5
    assert restored.service_series("a") == 3
    jobs = restored.families["jobs"]
    assert (jobs.kind, jobs.help) == ("counter", "Jobs done")
    assert jobs.series[(("job", "a"),)].value == 2.0
    assert jobs.series[(("job", "a"),)].updated == 7.0 - 110.0
    temps = restored.families["temp"].series
    assert math.isnan(temps[(("job", "a"), ("room", "1"))].value)
    assert temps[(("job", "b"),)].value == -math.inf
    latency = restored.families["latency"]
    assert latency.unit == "seconds"
    held = latency.series[(("job", "a"),)]
    assert (held.bounds, held.counts, held.sum, held.count) == ((1.0, 10.0), [1, 1, 1], 33.2, 3)
    assert restored.families["size"].series[(("job", "c"),)].quantiles == (
        (0.5, 1.0), (0.99, math.inf))
    assert restored_state.changes() == {}


def test_expired_series_are_deleted_and_not_restored():
    store, state = make(100.0, 1_000_000.0, expiration=60.0)
    gauge = store.family("temp", "gauge")
    store.set(gauge, (("job", "old"),), 1.0, 30.0)
    store.set(gauge, (("job", "new"),), 2.0, 90.0)
    rows = state.changes()
    store.set(gauge, (("job", "new"),), 3.0, 95.0)
    store.expire()  # "old" is 70 s idle
    deleted = state.changes()
    assert sorted(v is None for v in deleted.values()) == [False, True]
    rows.update(deleted)

    restored, restored_state = make(5.0, 1_000_030.0, expiration=60.0)
    restored_state.restore([(k, v) for k, v in rows.items() if v is not None])
    assert list(restored.families["temp"].series) == [(("job", "new"),)]

    later, later_state = make(5.0, 1_000_100.0, expiration=60.0)  # "new" idle 105 s now
    later_state.restore([(k, v) for k, v in rows.items() if v is not None])
    assert later.families == {}
    assert list(later_state.changes().values()) == [None]
