"""In-memory aggregation of ingested metrics, served on /metrics by a custom collector.

Series are kept in plain dicts keyed by the sorted label tuple; the prometheus_client
families are built only at scrape time. Counters add increments, gauges take the last
value, histograms observe into buckets. Series not updated for `expiration` seconds
disappear at the next scrape. Every change is remembered (`Family.dirty`, `removed`) until
`exporters.prometheus.persist` takes it to persist it.

Names, types and the series limits are decided at admission, before a request is
answered (`name_problem`, `admit_series`); what an admitted request may add is held as a
`Reservation` until it is applied, so that concurrent requests are judged together.
Applying never refuses a series: what was answered 2xx is kept.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

from flext_observability.exporters.prometheus.naming import native_metric_name
from flext_observability.models.labels import label_name
from flext_observability.models.wire import series_key

LabelKey = tuple[tuple[str, str], ...]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_INF = float("inf")

# Names the collector exposes itself: a client's family may not expose them.
RESERVED_NAMES = frozenset({"target_info"})
RESERVED_PREFIXES = ("flext_collector_", "flext_service_health_")
# The sample names a family of each kind exposes besides its own name.
SUFFIXES = {
    "counter": ("_total",),
    "gauge": (),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}
_ALL_SUFFIXES = ("_total", "_bucket", "_sum", "_count")
# How many fingerprints of requests seen once are remembered (`MetricStore.learn`).
_SEEN_HELD = 10_000


class SeriesRejected(Exception):
    """A family the store will not take at apply time: another kind holds the name."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(slots=True)
class Reservation:
    """What one admitted request may add before it is applied: the families it uses
    (name -> kind: held even if a family expires meanwhile), and its new series, by key
    (`series`, with their count per service and in all) or, far from every limit, as an
    upper bound per family (`upper`), with `source` to read them by key when a request
    comes near a limit (`MetricStore.refine`)."""

    kinds: dict[str, str] = field(default_factory=dict)
    series: dict[str, set[LabelKey]] = field(default_factory=dict)
    services: dict[str, int] = field(default_factory=dict)
    new: int = 0
    upper: dict[str, int] = field(default_factory=dict)
    source: Callable[[], Iterable[tuple[str, LabelKey]]] | None = None
    # A request whose every series the store held when it was admitted (`MetricStore.plan`)
    # reserves nothing; should a series go before it is applied, this bound becomes `upper`.
    bound: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Scalar:
    value: float
    updated: float
    time_ns: int = 0


@dataclass(slots=True)
class Histogram:
    bounds: tuple[float, ...]
    counts: list[float]
    sum: float = 0.0
    count: float = 0.0
    updated: float = 0.0
    time_ns: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


@dataclass(slots=True)
class Summary:
    quantiles: tuple[tuple[float, float], ...]
    sum: float
    count: float
    updated: float
    time_ns: int = 0


@dataclass(slots=True)
class PlannedRun:
    """One run of a planned request: its family, and per item the series it updates (the
    scalars of a counter or a gauge, or the histograms) and its key."""

    family: Family
    keys: list[LabelKey]
    scalars: list[Scalar] = field(default_factory=list)
    histograms: list[Histogram] = field(default_factory=list)


@dataclass(slots=True)
class Family:
    name: str
    kind: str
    help: str
    unit: str = ""
    series: dict[LabelKey, Scalar | Histogram | Summary] = field(default_factory=dict)
    # Series changed (or expired) since the state was last persisted.
    dirty: set[LabelKey] = field(default_factory=set)


_SeriesT = TypeVar("_SeriesT", Scalar, Histogram, Summary)


def _series_as(
    family: Family, series: Scalar | Histogram | Summary, kind: type[_SeriesT]
) -> _SeriesT:
    """A family's series as the type of its kind (`MetricStore.family` refuses another kind)."""
    if isinstance(series, kind):
        return series
    raise TypeError(f"metric '{family.name}' is a {family.kind}, not a {kind.__name__}")


class MetricStore:
    """The aggregated series of every ingested metric, with the series limits: in all, per
    metric, and per service (the `job` label)."""

    def __init__(
        self,
        max_series: int,
        max_series_per_metric: int,
        expiration: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_series_per_service: int,
    ) -> None:
        self.max_series = max_series
        self.max_series_per_metric = max_series_per_metric
        self.max_series_per_service = max_series_per_service
        self.expiration = expiration
        self._clock = clock
        self.families: dict[str, Family] = {}
        self._series_count = 0
        self._service_series: dict[str, int] = {}
        self._names: dict[tuple[str, str], str] = {}
        self._label_keys: dict[bytes, LabelKey] = {}
        # Expired series of families that are gone, not yet persisted as deleted.
        self.removed: set[tuple[str, LabelKey]] = set()
        # Reservations of requests admitted and not yet applied, by queue sequence number,
        # and their sums: families (name -> [kind, requests]) and series.
        self._held: dict[int, Reservation] = {}
        self._held_kinds: dict[str, list[Any]] = {}
        self._held_keys: dict[str, dict[LabelKey, int]] = {}
        self._held_services: dict[str, int] = {}
        self._held_new = 0
        self._held_upper: dict[str, int] = {}
        self._held_upper_total = 0
        # Plans of requests seen more than once (`plan`), by fingerprint, and how many items
        # they hold; fingerprints seen once; held reservations with a bound (by seq).
        self._plans: dict[bytes, list[PlannedRun]] = {}
        self._planned_items = 0
        self._seen: set[bytes] = set()
        self._bounded: set[int] = set()
        # The kind of a family exposed as a name by another part (the pushed groups), or
        # None: a client's family may not expose that name.
        self.foreign: Callable[[str], str | None] = _no_family

    @property
    def series_count(self) -> int:
        return self._series_count

    def service_series(self, service: str) -> int:
        """Series held with `job="<service>"` (`""`: series without a job label)."""
        return self._service_series.get(service, 0)

    def family_name(self, name: str, kind: str) -> str:
        """Exposition name of a native metric: dotted names translated, `_total` kept off."""
        cache_key = (kind, name)
        cached = self._names.get(cache_key)
        if cached is None:
            cached = native_metric_name(name)
            if kind == "counter" and cached.endswith("_total"):
                cached = cached[: -len("_total")]
            self._names[cache_key] = cached
        return cached

    def label_key(self, series: bytes) -> LabelKey:
        """The labels of a digest's series key (`models.wire`), remembered: series are
        updated far more often than created."""
        key = self._label_keys.get(series)
        if key is None:
            if len(self._label_keys) >= 2 * self.max_series:
                self._label_keys.clear()
            key = self._label_keys[series] = native_labels(*series_key(series))
        return key

    def family(self, name: str, kind: str, help_text: str = "", unit: str = "") -> Family:
        """The family for name, created on first use; a different kind is refused (only
        when admission was bypassed: a record queued before a restart)."""
        found = self.families.get(name)
        if found is None:
            found = self.families[name] = Family(name, kind, help_text, unit)
        elif found.kind != kind:
            raise SeriesRejected(f"metric '{name}' is a {found.kind}, not a {kind}")
        elif help_text and not found.help:
            found.help = help_text
            found.dirty.update(found.series)
        return found

    def kind_of(self, name: str, local: dict[str, str] | None = None) -> str | None:
        """The kind of family `name`: held, reserved by an admitted request, or in `local`
        (the families of the request being admitted); None when unknown."""
        if local:
            kind = local.get(name)
            if kind is not None:
                return kind
        found = self.families.get(name)
        if found is not None:
            return found.kind
        held = self._held_kinds.get(name)
        return held[0] if held is not None else None

    def name_problem(
        self, name: str, kind: str, local: dict[str, str], *, foreign: bool = True
    ) -> tuple[str, str] | None:
        """(reason, message) when a client's family `name` of `kind` may not be exposed: it
        is another kind, it would expose a reserved name, or a name another family exposes
        (a counter `x` exposes `x_total`, a histogram `h` exposes `h_bucket`, ...), here
        or (with `foreign`) in the pushed groups."""
        exposed = (name, *(name + suffix for suffix in SUFFIXES[kind]))
        for sample in exposed:
            if sample in RESERVED_NAMES or sample.startswith(RESERVED_PREFIXES):
                return (
                    "reserved_name",
                    f"metric '{name}' would expose '{sample}', a name the collector reserves",
                )
            other = self.foreign(sample) if foreign else None
            if other is not None:
                return (
                    "type_conflict",
                    f"metric '{name}' would expose '{sample}', which a pushed {other} "
                    "exposes (/metrics/job/...)",
                )
        known = self.kind_of(name, local)
        if known is not None:
            if known == kind:
                return None
            return "type_conflict", f"metric '{name}' is a {known}, not a {kind}"
        for sample in exposed:
            other = self._exposer(sample, name, local)
            if other is not None:
                return (
                    "type_conflict",
                    f"metric '{name}' ({kind}) would expose '{sample}', which the "
                    f"{self.kind_of(other, local)} '{other}' exposes",
                )
        return None

    def _exposer(self, sample: str, own: str, local: dict[str, str]) -> str | None:
        """Another family than `own` that exposes the sample name `sample`."""
        if sample != own and self.kind_of(sample, local) is not None:
            return sample
        for suffix in _ALL_SUFFIXES:
            if sample.endswith(suffix):
                family = sample[: -len(suffix)]
                kind = self.kind_of(family, local) if family != own else None
                if kind is not None and suffix in SUFFIXES[kind]:
                    return family
        return None

    def far_from_limits(self, upper: dict[str, int]) -> bool:
        """Cheap pre-check: can no limit be passed by at most `upper[name]` new series of
        each family, with every reservation counted as new series of one service?"""
        new = sum(upper.values()) + self._held_new + self._held_upper_total
        if self._series_count + new > self.max_series:
            return False
        if max(self._service_series.values(), default=0) + new > self.max_series_per_service:
            return False
        for name, count in upper.items():
            family = self.families.get(name)
            held = self._held_keys.get(name)
            if (
                (len(family.series) if family is not None else 0)
                + (len(held) if held is not None else 0)
                + self._held_upper.get(name, 0)
                + count
                > self.max_series_per_metric
            ):
                return False
        return True

    def refine(self) -> None:
        """Count the series of held reservations that have only an upper bound by key, so
        that a request near a limit is judged by what is really new, not by the bound
        (which counts a series sent again by each request in flight)."""
        for reservation in self._held.values():
            source = reservation.source
            if source is None:
                continue
            self._count_held(reservation, -1)
            reservation.upper, reservation.source = {}, None
            for name, key in source():
                family = self.families.get(name)
                if family is not None and key in family.series:
                    continue
                mine = reservation.series.setdefault(name, set())
                if key not in mine:
                    mine.add(key)
                    service = job_of(key)
                    reservation.services[service] = reservation.services.get(service, 0) + 1
                    reservation.new += 1
            self._count_held(reservation, 1)

    def admit_series(
        self, name: str, key: LabelKey, reservation: Reservation
    ) -> tuple[str, str] | None:
        """Count series `key` of family `name` into `reservation` when it is new and within
        every limit; else (field, message) of the limit it would pass (`field`: "service"
        for the service's own limit, "name" for the others)."""
        family = self.families.get(name)
        if family is not None and key in family.series:
            return None
        held = self._held_keys.get(name)
        if held is not None and key in held:
            return None
        mine = reservation.series.get(name)
        if mine is not None and key in mine:
            return None
        upper = self._held_upper_total
        in_metric = (
            (len(family.series) if family is not None else 0)
            + (len(held) if held is not None else 0)
            + (len(mine) if mine is not None else 0)
            + self._held_upper.get(name, 0)
        )
        if in_metric >= self.max_series_per_metric:
            return "name", (
                f"metric '{name}' would have more than "
                f"exporters.prometheus.max_series_per_metric={self.max_series_per_metric} "
                "series"
            )
        if self._series_count + self._held_new + upper + reservation.new >= self.max_series:
            return "name", (
                f"the collector would hold more than exporters.prometheus.max_series="
                f"{self.max_series} series"
            )
        service = job_of(key)
        in_service = (
            self._service_series.get(service, 0)
            + self._held_services.get(service, 0)
            + reservation.services.get(service, 0)
        )
        if in_service + upper >= self.max_series_per_service:
            return "service", (
                f"service '{service}' would have more than "
                f"exporters.prometheus.max_series_per_service={self.max_series_per_service} "
                "series"
            )
        if mine is None:
            mine = reservation.series[name] = set()
        mine.add(key)
        reservation.services[service] = reservation.services.get(service, 0) + 1
        reservation.new += 1
        return None

    def hold(self, seq: int, reservation: Reservation) -> None:
        """Hold `reservation` until the request queued as `seq` is applied (`release`)."""
        self._held[seq] = reservation
        self._count_held(reservation, 1)
        if reservation.bound:
            self._bounded.add(seq)

    def release(self, seq: int) -> None:
        """The request queued as `seq` is applied or was not queued: forget its reservation."""
        reservation = self._held.pop(seq, None)
        if reservation is not None:
            self._count_held(reservation, -1)
            self._bounded.discard(seq)

    def plan(self, fingerprint: bytes) -> list[PlannedRun] | None:
        """The series a request of this fingerprint (`MetricsDigest.fingerprint`) updates,
        when one was applied before and no series went since: such a request adds no
        series, so it passes no limit, and it is applied without looking a series up."""
        return self._plans.get(fingerprint)

    def learn(self, fingerprint: bytes, runs: Callable[[], list[PlannedRun]]) -> None:
        """A request of this fingerprint was applied (its every series held now): its plan
        (`runs()`) is kept from the second time on."""
        if fingerprint not in self._seen:
            if len(self._seen) >= _SEEN_HELD:
                self._seen.clear()
            self._seen.add(fingerprint)
            return
        planned = runs()
        items = sum(len(run.keys) for run in planned)
        if self._planned_items + items > 2 * self.max_series:
            self._plans.clear()
            self._planned_items = 0
        self._plans[fingerprint] = planned
        self._planned_items += items

    def _unplan(self) -> None:
        """A series went: plans no longer hold, and requests admitted by one count their
        bound as possible new series until they are applied."""
        self._plans.clear()
        self._planned_items = 0
        for seq in self._bounded:
            reservation = self._held[seq]
            self._count_held(reservation, -1)
            reservation.upper, reservation.bound = reservation.bound, {}
            self._count_held(reservation, 1)
        self._bounded.clear()

    def _count_held(self, reservation: Reservation, sign: int) -> None:
        for name, kind in reservation.kinds.items():
            entry = self._held_kinds.setdefault(name, [kind, 0])
            entry[1] += sign
            if not entry[1]:
                del self._held_kinds[name]
        for name, keys in reservation.series.items():
            held = self._held_keys.setdefault(name, {})
            for key in keys:
                count = held.get(key, 0) + sign
                if count:
                    held[key] = count
                    if count == 1 and sign > 0:
                        self._held_new += 1
                        service = job_of(key)
                        self._held_services[service] = self._held_services.get(service, 0) + 1
                    continue
                del held[key]
                self._held_new -= 1
                service = job_of(key)
                left = self._held_services[service] - 1
                if left:
                    self._held_services[service] = left
                else:
                    del self._held_services[service]
            if not held:
                del self._held_keys[name]
        for name, count in reservation.upper.items():
            left = self._held_upper.get(name, 0) + sign * count
            if left:
                self._held_upper[name] = left
            else:
                self._held_upper.pop(name, None)
            self._held_upper_total += sign * count

    def _new_series(self, key: LabelKey) -> None:
        service = job_of(key)
        self._service_series[service] = self._service_series.get(service, 0) + 1
        self._series_count += 1

    def add(self, family: Family, key: LabelKey, value: float, now: float) -> None:
        """Counter increment."""
        self._scalar(family, key, value, now, add=True)

    def set(self, family: Family, key: LabelKey, value: float, now: float) -> None:
        """Gauge (or cumulative counter) value."""
        self._scalar(family, key, value, now, add=False)

    def _scalar(
        self, family: Family, key: LabelKey, value: float, now: float, *, add: bool
    ) -> None:
        series = family.series.get(key)
        if series is None:
            self._new_series(key)
            family.series[key] = Scalar(value, now)
        else:
            series = _series_as(family, series, Scalar)
            series.value = series.value + value if add else value
            series.updated = now
        family.dirty.add(key)

    def scalars(
        self, family: Family, keys: Iterable[bytes], values: Iterable[float], now: float,
        *, add: bool,
    ) -> None:
        """`add` (`add=True`) or `set` for digest series keys (`models.wire`), the series
        looked up inline."""
        series, label_keys, dirty = family.series, self._label_keys, family.dirty
        for key, value in zip(keys, values, strict=True):
            label_key = label_keys.get(key) or self.label_key(key)
            found = series.get(label_key)
            if isinstance(found, Scalar):
                found.value = found.value + value if add else value
                found.updated = now
                dirty.add(label_key)
            else:
                self._scalar(family, label_key, value, now, add=add)

    def observe(
        self, family: Family, key: LabelKey, value: float, bounds: tuple[float, ...], now: float
    ) -> None:
        series = family.series.get(key)
        if series is None:
            self._new_series(key)
            series = family.series[key] = Histogram(bounds, [0.0] * (len(bounds) + 1))
        else:
            series = _series_as(family, series, Histogram)
        series.observe(value)
        series.updated = now
        family.dirty.add(key)

    def set_histogram(
        self,
        family: Family,
        key: LabelKey,
        bounds: tuple[float, ...],
        counts: list[float],
        total: float,
        count: float,
        now: float,
    ) -> None:
        """A cumulative histogram point (OTLP): replaces the series' buckets."""
        series = family.series.get(key)
        if series is None:
            self._new_series(key)
            family.series[key] = Histogram(bounds, counts, total, count, now)
        else:
            series = _series_as(family, series, Histogram)
            series.bounds, series.counts = bounds, counts
            series.sum, series.count, series.updated = total, count, now
        family.dirty.add(key)

    def set_summary(
        self,
        family: Family,
        key: LabelKey,
        quantiles: tuple[tuple[float, float], ...],
        total: float,
        count: float,
        now: float,
    ) -> None:
        """A summary point (OTLP): quantiles, sum and count as they came."""
        if key not in family.series:
            self._new_series(key)
        family.series[key] = Summary(quantiles, total, count, now)
        family.dirty.add(key)

    def now(self) -> float:
        return self._clock()

    def restore(self, family: Family, key: LabelKey, series: Scalar | Histogram | Summary) -> None:
        """Put back a persisted series, counted in the limits' bookkeeping but not refused
        by them (it was accepted before the restart)."""
        if self._plans or self._bounded:
            self._unplan()
        if key not in family.series:
            service = job_of(key)
            self._service_series[service] = self._service_series.get(service, 0) + 1
            self._series_count += 1
        family.series[key] = series

    def remove(self, family: Family, key: LabelKey) -> None:
        """Forget series `key` now (its family goes at the next `expire` if left empty)."""
        if key in family.series:
            self._forget(family, key)

    def _forget(self, family: Family, key: LabelKey) -> None:
        if self._plans or self._bounded:
            self._unplan()
        del family.series[key]
        family.dirty.add(key)
        service = job_of(key)
        held = self._service_series[service] - 1
        if held:
            self._service_series[service] = held
        else:
            del self._service_series[service]
        self._series_count -= 1

    def expire(self) -> None:
        deadline = self._clock() - self.expiration
        for name in list(self.families):
            family = self.families[name]
            stale = [key for key, s in family.series.items() if s.updated < deadline]
            for key in stale:
                self._forget(family, key)
            if not family.series:
                self.removed.update((name, key) for key in family.dirty)
                del self.families[name]

    def collect(self) -> Iterator[Metric]:
        """prometheus_client collector protocol: the families as they stand now."""
        self.expire()
        for family in self.families.values():
            yield _to_metric(family)


def _no_family(_name: str) -> str | None:
    return None


def job_of(key: LabelKey) -> str:
    """The `job` label of a series (its service), `""` without one."""
    for name, value in key:
        if name == "job":
            return value
    return ""


def native_labels(service: str, instance: str, labels: dict[str, str] | None) -> LabelKey:
    pairs = [("job", service)]
    if instance:
        pairs.append(("instance", instance))
    if labels:
        pairs.extend((label_name(k) if "." in k else k, v) for k, v in labels.items())
    pairs.sort()
    return tuple(pairs)


def _to_metric(family: Family) -> Metric:
    unit = family.unit if family.unit and family.name.endswith("_" + family.unit) else ""
    metric = Metric(family.name, family.help or family.name, family.kind, unit)
    name = family.name
    if family.kind == "counter":
        for key, series in family.series.items():
            metric.add_sample(name + "_total", dict(key), _series_as(family, series, Scalar).value)
    elif family.kind == "histogram":
        for key, series in family.series.items():
            _histogram_samples(metric, name, dict(key), _series_as(family, series, Histogram))
    elif family.kind == "summary":
        for key, series_of_key in family.series.items():
            labels = dict(key)
            series = _series_as(family, series_of_key, Summary)
            for quantile, value in series.quantiles:
                quantile_text = floatToGoString(quantile)  # type: ignore[no-untyped-call]
                metric.add_sample(name, {**labels, "quantile": quantile_text}, value)
            metric.add_sample(name + "_sum", labels, series.sum)
            metric.add_sample(name + "_count", labels, series.count)
    else:
        for key, series in family.series.items():
            metric.add_sample(name, dict(key), _series_as(family, series, Scalar).value)
    return metric


def _histogram_samples(metric: Metric, name: str, labels: dict[str, str], h: Histogram) -> None:
    running = 0.0
    for bound, count in zip((*h.bounds, _INF), h.counts, strict=True):
        running += count
        le = floatToGoString(bound)  # type: ignore[no-untyped-call]
        metric.add_sample(name + "_bucket", {**labels, "le": le}, running)
    metric.add_sample(name + "_sum", labels, h.sum)
    metric.add_sample(name + "_count", labels, h.count)


def bucket_bounds(buckets: Iterable[float] | None) -> tuple[float, ...]:
    if not buckets:
        return DEFAULT_BUCKETS
    return tuple(b for b in buckets if b != _INF)
