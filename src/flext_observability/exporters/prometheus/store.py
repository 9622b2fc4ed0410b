"""In-memory aggregation of ingested metrics, served on /metrics by a custom collector.

Series are kept in plain dicts keyed by the sorted label tuple; the prometheus_client
families are built only at scrape time. Counters add increments, gauges take the last
value, histograms observe into buckets. Series not updated for `expiration` seconds
disappear at the next scrape. Every change is remembered (`Family.dirty`, `removed`) until
`exporters.prometheus.persist` takes it to persist it.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

from flext_observability.exporters.prometheus.naming import label_name, native_metric_name
from flext_observability.models.wire import series_key

LabelKey = tuple[tuple[str, str], ...]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_INF = float("inf")


class SeriesRejected(Exception):
    """A metric that the store will not take: a type conflict or a series limit. `service`
    is set when the limit is the service's own (max_series_per_service)."""

    def __init__(self, metric: str, reason: str, message: str, service: str | None = None) -> None:
        super().__init__(message)
        self.metric = metric
        self.reason = reason
        self.message = message
        self.service = service


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
class Family:
    name: str
    kind: str
    help: str
    unit: str = ""
    series: dict[LabelKey, Scalar | Histogram | Summary] = field(default_factory=dict)
    # Series changed (or expired) since the state was last persisted.
    dirty: set[LabelKey] = field(default_factory=set)


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
        """The family for name, created on first use; a different kind is refused."""
        found = self.families.get(name)
        if found is None:
            found = self.families[name] = Family(name, kind, help_text, unit)
        elif found.kind != kind:
            raise SeriesRejected(
                name, "type_conflict", f"metric '{name}' is a {found.kind}, not a {kind}"
            )
        elif help_text and not found.help:
            found.help = help_text
            found.dirty.update(found.series)
        return found

    def check_new_series(self, wanted: dict[str, set[LabelKey]]) -> None:
        """Refuse a request whose new series would pass the total, per-metric or per-service
        limit."""
        new_total = 0
        new_per_service: dict[str, int] = {}
        for name, keys in wanted.items():
            existing = self.families.get(name)
            present = existing.series if existing is not None else {}
            new_keys = [key for key in keys if key not in present]
            new = len(new_keys)
            for key in new_keys:
                service = job_of(key)
                new_per_service[service] = new_per_service.get(service, 0) + 1
            if len(present) + new > self.max_series_per_metric:
                raise SeriesRejected(
                    name,
                    "series_limit",
                    f"metric '{name}' would have more than "
                    f"exporters.prometheus.max_series_per_metric={self.max_series_per_metric} "
                    "series",
                )
            new_total += new
        if self._series_count + new_total > self.max_series:
            raise SeriesRejected(
                next(iter(wanted), ""),
                "series_limit",
                f"the collector would hold more than exporters.prometheus.max_series="
                f"{self.max_series} series",
            )
        for service, new in new_per_service.items():
            if self.service_series(service) + new > self.max_series_per_service:
                raise SeriesRejected(
                    next(iter(wanted)),
                    "series_limit",
                    f"service '{service}' would have more than "
                    f"exporters.prometheus.max_series_per_service={self.max_series_per_service} "
                    "series",
                    service=service,
                )

    def could_pass_limits(self, new_series: int) -> bool:
        """Cheap pre-check: could a request with at most new_series new series pass a limit?"""
        if self._series_count + new_series > self.max_series:
            return True
        if new_series > self.max_series_per_metric:  # a new metric's series alone
            return True
        if max(self._service_series.values(), default=0) + new_series > (
            self.max_series_per_service
        ):
            return True
        return any(
            len(f.series) + new_series > self.max_series_per_metric for f in self.families.values()
        )

    def _new_series(self, family: Family, key: LabelKey) -> bool:
        if (
            self._series_count >= self.max_series
            or len(family.series) >= self.max_series_per_metric
        ):
            return False
        service = job_of(key)
        held = self._service_series.get(service, 0)
        if held >= self.max_series_per_service:
            return False
        self._service_series[service] = held + 1
        self._series_count += 1
        return True

    def add(self, family: Family, key: LabelKey, value: float, now: float) -> bool:
        """Counter increment; False when a limit keeps the series out."""
        return self._scalar(family, key, value, now, add=True)

    def set(self, family: Family, key: LabelKey, value: float, now: float) -> bool:
        """Gauge (or cumulative counter) value; False when a limit keeps the series out."""
        return self._scalar(family, key, value, now, add=False)

    def _scalar(
        self, family: Family, key: LabelKey, value: float, now: float, *, add: bool
    ) -> bool:
        series = family.series.get(key)
        if series is None:
            if not self._new_series(family, key):
                return False
            family.series[key] = Scalar(value, now)
        else:
            series.value = series.value + value if add else value
            series.updated = now
        family.dirty.add(key)
        return True

    def scalars(
        self, family: Family, keys: Iterable[bytes], values: Iterable[float], now: float,
        *, add: bool,
    ) -> int:
        """`add` (`add=True`) or `set` for digest series keys (`models.wire`), the series
        looked up inline; how many a limit kept out."""
        series, label_keys, dirty = family.series, self._label_keys, family.dirty
        dropped = 0
        for key, value in zip(keys, values, strict=True):
            label_key = label_keys.get(key) or self.label_key(key)
            found = series.get(label_key)
            if found is None:
                dropped += not self._scalar(family, label_key, value, now, add=add)
            else:
                found.value = found.value + value if add else value
                found.updated = now
                dirty.add(label_key)
        return dropped

    def observe(
        self, family: Family, key: LabelKey, value: float, bounds: tuple[float, ...], now: float
    ) -> bool:
        series = family.series.get(key)
        if series is None:
            if not self._new_series(family, key):
                return False
            series = family.series[key] = Histogram(bounds, [0.0] * (len(bounds) + 1))
        series.observe(value)
        series.updated = now
        family.dirty.add(key)
        return True

    def set_histogram(
        self,
        family: Family,
        key: LabelKey,
        bounds: tuple[float, ...],
        counts: list[float],
        total: float,
        count: float,
        now: float,
    ) -> bool:
        """A cumulative histogram point (OTLP): replaces the series' buckets."""
        series = family.series.get(key)
        if series is None:
            if not self._new_series(family, key):
                return False
            family.series[key] = Histogram(bounds, counts, total, count, now)
        else:
            series.bounds, series.counts = bounds, counts
            series.sum, series.count, series.updated = total, count, now
        family.dirty.add(key)
        return True

    def set_summary(
        self,
        family: Family,
        key: LabelKey,
        quantiles: tuple[tuple[float, float], ...],
        total: float,
        count: float,
        now: float,
    ) -> bool:
        """A summary point (OTLP): quantiles, sum and count as they came."""
        series = family.series.get(key)
        if series is None and not self._new_series(family, key):
            return False
        family.series[key] = Summary(quantiles, total, count, now)
        family.dirty.add(key)
        return True

    def now(self) -> float:
        return self._clock()

    def restore(self, family: Family, key: LabelKey, series: Scalar | Histogram | Summary) -> None:
        """Put back a persisted series, counted in the limits' bookkeeping but not refused
        by them (it was accepted before the restart)."""
        if key not in family.series:
            service = job_of(key)
            self._service_series[service] = self._service_series.get(service, 0) + 1
            self._series_count += 1
        family.series[key] = series

    def expire(self) -> None:
        deadline = self._clock() - self.expiration
        for name in list(self.families):
            family = self.families[name]
            stale = [key for key, s in family.series.items() if s.updated < deadline]
            for key in stale:
                del family.series[key]
                family.dirty.add(key)
                service = job_of(key)
                held = self._service_series[service] - 1
                if held:
                    self._service_series[service] = held
                else:
                    del self._service_series[service]
            self._series_count -= len(stale)
            if not family.series:
                self.removed.update((name, key) for key in family.dirty)
                del self.families[name]

    def collect(self) -> Iterator[Metric]:
        """prometheus_client collector protocol: the families as they stand now."""
        self.expire()
        for family in self.families.values():
            yield _to_metric(family)


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
            metric.add_sample(name + "_total", dict(key), series.value)  # type: ignore[union-attr]
    elif family.kind == "histogram":
        for key, series in family.series.items():
            _histogram_samples(metric, name, dict(key), series)  # type: ignore[arg-type]
    elif family.kind == "summary":
        for key, series in family.series.items():
            labels = dict(key)
            for quantile, value in series.quantiles:  # type: ignore[union-attr]
                metric.add_sample(name, {**labels, "quantile": floatToGoString(quantile)}, value)
            metric.add_sample(name + "_sum", labels, series.sum)  # type: ignore[union-attr]
            metric.add_sample(name + "_count", labels, series.count)  # type: ignore[union-attr]
    else:
        for key, series in family.series.items():
            metric.add_sample(name, dict(key), series.value)  # type: ignore[union-attr]
    return metric


def _histogram_samples(metric: Metric, name: str, labels: dict[str, str], h: Histogram) -> None:
    running = 0.0
    for bound, count in zip((*h.bounds, _INF), h.counts, strict=True):
        running += count
        metric.add_sample(name + "_bucket", {**labels, "le": floatToGoString(bound)}, running)
    metric.add_sample(name + "_sum", labels, h.sum)
    metric.add_sample(name + "_count", labels, h.count)


def bucket_bounds(buckets: Iterable[float] | None) -> tuple[float, ...]:
    if not buckets:
        return DEFAULT_BUCKETS
    return tuple(b for b in buckets if b != _INF)
