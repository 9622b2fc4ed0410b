"""The MetricStore's series limit per service, in process (the daemon's answers to series
past the limit are in tests/receivers/test_limits.py)."""

from flext_observability.exporters.prometheus.store import (
    MetricStore,
    Reservation,
    native_labels,
)
from helpers.clock import Clock


def test_store_admits_at_most_max_series_per_service_and_expiry_frees_room():
    clock = Clock()
    store = MetricStore(100, 100, 60, clock, max_series_per_service=2)
    keys = [native_labels("a", "", {"n": str(i)}) for i in range(3)]
    reservation = Reservation()
    assert store.admit_series("requests", keys[0], reservation) is None
    assert store.admit_series("requests", keys[1], reservation) is None
    field, message = store.admit_series("requests", keys[2], reservation)
    assert field == "service"
    assert "exporters.prometheus.max_series_per_service=2" in message
    assert store.admit_series("requests", native_labels("b", "", None), reservation) is None
    store.hold(1, reservation)
    # Held, not yet applied: another request is judged with it.
    assert store.admit_series("requests", keys[2], Reservation()) is not None
    family = store.family("requests", "counter")
    for key in (keys[0], keys[1], native_labels("b", "", None)):
        store.add(family, key, 1, clock.now)
    store.release(1)
    assert (store.service_series("a"), store.service_series("b")) == (2, 1)
    assert store.admit_series("requests", keys[2], Reservation()) is not None
    clock.now += 61
    store.expire()
    assert (store.service_series("a"), store.series_count) == (0, 0)
    assert store.admit_series("requests", keys[2], Reservation()) is None
