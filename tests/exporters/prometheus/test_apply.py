"""Applying queued records: an error in one item never costs its neighbours, and what was
admitted is applied even where a limit is now reached (it was answered 2xx)."""

from __future__ import annotations

import orjson
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from prometheus_client import CollectorRegistry

from flext_observability.exporters.prometheus.exporter import PrometheusExporter
from flext_observability.exporters.prometheus.store import (
    MetricStore,
    Reservation,
    native_labels,
)
from flext_observability.models.wire import decode_metrics, digest, pack_digest
from flext_observability.pipeline.intake import METRICS_DIGEST, OTLP_PROTOBUF, Inadmissible
from flext_observability.pipeline.queue import Record, Signal
from flext_observability.processors.admission import SeriesAdmission
from flext_observability.telemetry import SelfTelemetry


def native_record(seq: int, items: list[dict]) -> Record:
    body = orjson.dumps(items)
    packed = pack_digest(digest(decode_metrics(body, batch=True)))
    return Record(seq, Signal.METRICS, METRICS_DIGEST, packed, len(items))


def otlp_record(seq: int, name: str, value: float) -> Record:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "o"
    resource.scope_metrics.add().metrics.add(name=name).gauge.data_points.add(as_double=value)
    return Record(seq, Signal.METRICS, OTLP_PROTOBUF, request.SerializeToString(), 1)


def exporter(max_series_per_metric: int = 100) -> tuple[PrometheusExporter, CollectorRegistry]:
    registry = CollectorRegistry()
    store = MetricStore(1000, max_series_per_metric, 300, max_series_per_service=1000)
    return PrometheusExporter(store, SelfTelemetry(registry, None)), registry


def dropped(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value(
        "flext_collector_dropped_items_total", {"exporter": "prometheus", "reason": reason})


def test_a_record_that_fails_costs_only_its_own_items():
    prometheus, registry = exporter()
    broken = Record(2, Signal.METRICS, OTLP_PROTOBUF, b"\xff\xff\xff", 3)
    prometheus.handle([
        native_record(1, [{"name": "before", "type": "gauge", "value": 1, "service": "s"}]),
        broken,
        otlp_record(3, "after", 2.0),
    ])
    families = prometheus.store.families
    assert families["before"].series[native_labels("s", "", None)].value == 1.0
    assert families["after"].series[(("job", "o"),)].value == 2.0
    assert dropped(registry, "apply_error") == 3
    assert registry.get_sample_value(
        "flext_collector_exported_items_total", {"exporter": "prometheus"}) == 2


def test_a_conflict_left_from_before_a_restart_costs_only_its_run():
    prometheus, registry = exporter()
    prometheus.handle([native_record(1, [
        {"name": "kind", "type": "gauge", "value": 1, "service": "s"}])])
    # Queued before a restart, so never admitted against the gauge: a counter of that name.
    prometheus.handle([native_record(2, [
        {"name": "kind", "type": "counter", "value": 5, "service": "s"},
        {"name": "kept", "type": "counter", "value": 5, "service": "s"},
    ])])
    assert prometheus.store.families["kind"].kind == "gauge"
    assert prometheus.store.families["kept"].series[native_labels("s", "", None)].value == 5
    assert dropped(registry, "type_conflict") == 1


def test_what_was_admitted_is_held_until_applied_then_released():
    prometheus, registry = exporter(max_series_per_metric=2)
    store = prometheus.store
    items = [{"name": "held", "type": "gauge", "value": i, "service": "s",
              "labels": {"n": str(i)}} for i in range(2)]
    record = native_record(7, items)
    admission = SeriesAdmission(store)
    admission.hold(7, admission.admit(digest(decode_metrics(orjson.dumps(items), True))))
    third = native_labels("s", "", {"n": "9"})
    # Held and not applied: a third series is refused, and so is the name as a counter.
    assert store.admit_series("held", third, Reservation()) is not None
    assert store.name_problem("held", "counter", {})[0] == "type_conflict"
    prometheus.handle([record])
    assert len(store.families["held"].series) == 2
    assert dropped(registry, "series_limit") is None
    # Applied: the two are series now, not reservations; held ones take points again.
    assert store.admit_series("held", native_labels("s", "", {"n": "0"}), Reservation()) is None
    assert store.admit_series("held", third, Reservation()) is not None


def test_requests_in_flight_sending_the_same_series_are_not_refused_near_a_limit():
    """A request far from every limit holds only a bound on its new series; near a limit
    the held ones are read by key, so that the same eight series sent by many requests
    not yet applied count eight times no more."""
    prometheus, _ = exporter(max_series_per_metric=10)
    admission = SeriesAdmission(prometheus.store)
    items = [{"name": "same", "type": "counter", "value": 1, "service": "s",
              "labels": {"n": str(i)}} for i in range(8)]
    body = orjson.dumps(items)
    for seq in range(1, 21):
        admission.hold(seq, admission.admit(digest(decode_metrics(body, True))))
    new = [{**items[0], "labels": {"n": "new"}}, {**items[0], "labels": {"n": "new2"}}]
    admission.hold(21, admission.admit(digest(decode_metrics(orjson.dumps(new), True))))
    past = [{**items[0], "labels": {"n": "one too many"}}]
    with pytest.raises(Inadmissible):
        admission.admit(digest(decode_metrics(orjson.dumps(past), True)))
    prometheus.handle([native_record(seq, items) for seq in range(1, 21)]
                      + [native_record(21, new)])
    assert len(prometheus.store.families["same"].series) == 10


def test_a_point_with_no_recorded_value_removes_its_series():
    """OTLP's staleness marker: the series leaves /metrics (and the limits' counts) at once;
    one older than the series' last point is out of order and changes nothing."""
    prometheus, _ = exporter()
    prometheus.handle([otlp_record(1, "ended", 2.0), otlp_record(2, "kept", 1.0)])
    late = otlp_record(3, "ended", 0.0)
    request = ExportMetricsServiceRequest.FromString(late.payload)
    point = request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    point.flags = 1
    stale = Record(3, Signal.METRICS, OTLP_PROTOBUF, request.SerializeToString(), 1)
    store = prometheus.store
    store.families["ended"].series[(("job", "o"),)].time_ns = 10
    prometheus.handle([stale])
    assert (("job", "o"),) in store.families["ended"].series
    point.time_unix_nano = 10
    prometheus.handle([Record(4, Signal.METRICS, OTLP_PROTOBUF, request.SerializeToString(), 1)])
    assert {family.name for family in store.collect()} == {"kept"}
    assert store.series_count == 1


def test_a_request_seen_again_is_applied_by_its_plan_with_the_same_result():
    """From the second time a request of the same series is applied, the store keeps its
    plan (the series it updates); applied by it, counters add, gauges set and histograms
    observe exactly as applied series by series."""
    items = [
        {"name": "hits", "type": "counter", "value": 2, "service": "s", "labels": {"p": "a"}},
        {"name": "hits", "type": "counter", "value": 3, "service": "s", "labels": {"p": "b"}},
        {"name": "temp", "type": "gauge", "value": 1, "service": "s"},
        {"name": "lat", "type": "histogram", "value": 0.3, "service": "s", "buckets": [1]},
    ]
    planned, _ = exporter()
    plain, _ = exporter()
    fingerprint = digest(decode_metrics(orjson.dumps(items), True)).fingerprint()
    for seq in range(1, 5):
        sent = [{**item, "value": item["value"] * seq} for item in items]
        planned.handle([native_record(seq, sent)])
        plain.handle([native_record(seq, sent)])
        plain.store._plans.clear()  # the control applies series by series
    assert planned.store.plan(fingerprint) is not None
    assert plain.store.plan(fingerprint) is None
    for name in ("hits", "temp", "lat"):
        ours = planned.store.families[name].series
        theirs = plain.store.families[name].series
        assert ours.keys() == theirs.keys()
        for key, series in ours.items():
            assert (series.value if name != "lat" else (series.counts, series.sum)) == (
                theirs[key].value if name != "lat" else (theirs[key].counts, theirs[key].sum))
    hits = planned.store.families["hits"].series
    assert hits[native_labels("s", "", {"p": "a"})].value == 2 * (1 + 2 + 3 + 4)
    assert planned.store.families["temp"].series[native_labels("s", "", None)].value == 4
    assert planned.store.families["lat"].series[native_labels("s", "", None)].count == 4


def test_a_request_admitted_by_its_plan_counts_its_series_again_once_one_goes():
    """A request whose series the store all holds reserves none; if a series goes (expiry,
    a staleness marker) before it is applied, its series count as possibly new again, so a
    new series past the limit is still refused."""
    prometheus, _ = exporter(max_series_per_metric=2)
    store = prometheus.store
    admission = SeriesAdmission(store)
    items = [{"name": "kept", "type": "gauge", "value": 1, "service": "s",
              "labels": {"n": str(i)}} for i in range(2)]
    prometheus.handle([native_record(1, items), native_record(2, items)])
    again = digest(decode_metrics(orjson.dumps(items), True))
    assert store.plan(again.fingerprint()) is not None
    reservation = admission.admit(again)
    assert not reservation.upper
    admission.hold(3, reservation)
    store.remove(store.families["kept"], native_labels("s", "", {"n": "0"}))
    assert store.plan(again.fingerprint()) is None
    assert reservation.upper == {"kept": 2}
    other = [{**items[0], "labels": {"n": "new"}}]
    with pytest.raises(Inadmissible):
        admission.admit(digest(decode_metrics(orjson.dumps(other), True)))
    prometheus.handle([native_record(3, items)])
    assert len(store.families["kept"].series) == 2
