"""The collector's own metrics (`flext_collector_*`, CONTRACT §5) on its own registry."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from flext_observability.pipeline.queue import Queue
from flext_observability.refusals.log import NotingCounter, RefusalLog
from flext_observability.signals import Signal


class _QueueCollector:
    """Queue depth per signal and capacity, read from the queue at scrape time."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "flext_collector_queue_items", "Items stored in the queue, by signal", labels=["signal"]
        )
        for signal in Signal:
            depth.add_metric([signal.value], self._queue.depth(signal))
        yield depth
        yield GaugeMetricFamily(
            "flext_collector_queue_capacity_items",
            "Items the queue holds at most (queue.max_items)",
            value=self._queue.max_items,
        )
        yield GaugeMetricFamily(
            "flext_collector_queue_bytes", "Payload bytes stored in the queue",
            value=self._queue.total_bytes,
        )
        yield GaugeMetricFamily(
            "flext_collector_queue_capacity_bytes",
            "Payload bytes the queue holds at most (queue.max_bytes)",
            value=self._queue.max_bytes,
        )


# A counter's value by (family name, sorted label pairs).
Counts = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class SelfTelemetry:
    """Counters every component updates; exposed with the ingested series on /metrics.

    An ingest worker (no queue of its own) keeps its counts here too and ships them to the
    collector process: `counts()` there, `add_counts()` here.
    """

    def __init__(
        self, registry: CollectorRegistry, queue: Queue | None, refusals_kept: int = 1000
    ) -> None:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        if queue is not None:
            registry.register(_QueueCollector(queue))
        self.received = Counter(
            "flext_collector_received_items",
            "Items accepted and queued, by signal and receiver",
            ["signal", "receiver"],
            registry=registry,
        )
        # The last refused requests (`/api/v1/refusals`); a worker's go to the collector.
        self.refusals = RefusalLog(refusals_kept, forward=queue is None)
        self.refused = NotingCounter(
            "flext_collector_refused_items",
            "Items refused at ingestion, by signal and reason",
            ["signal", "reason"],
            registry=registry,
        )
        self.http_requests = Counter(
            "flext_collector_http_requests",
            "Requests answered by the HTTP receivers, by receiver, signal and status code",
            ["receiver", "signal", "code"],
            registry=registry,
        )
        self.refused_connections = Counter(
            "flext_collector_refused_connections",
            "HTTP connections closed by a connection limit, by reason",
            ["reason"],
            registry=registry,
        )
        self.exported = Counter(
            "flext_collector_exported_items",
            "Items delivered by an exporter",
            ["exporter"],
            registry=registry,
        )
        self.export_failures = Counter(
            "flext_collector_export_failures",
            "Failed export attempts",
            ["exporter"],
            registry=registry,
        )
        self.export_retries = Counter(
            "flext_collector_export_retries",
            "Export attempts that were retried",
            ["exporter"],
            registry=registry,
        )
        self.dropped = Counter(
            "flext_collector_dropped_items",
            "Items dropped after acceptance by policy (e.g. a permanent downstream error)",
            ["exporter", "reason"],
            registry=registry,
        )
        self.state_write_failures = Counter(
            "flext_collector_state_write_failures",
            "Checkpoints of the held state (metric series, alerts, health) that could not be "
            "written; retried, the queue keeps their records meanwhile",
            registry=registry,
        )
        self.last_success = Gauge(
            "flext_collector_exporter_last_success_timestamp_seconds",
            "Unix time of the exporter's last request the downstream accepted",
            ["exporter"],
            registry=registry,
        )
        self.exporter_up = Gauge(
            "flext_collector_exporter_up",
            "1 when the exporter's last attempt succeeded (or it has nothing to send)",
            ["exporter"],
            registry=registry,
        )

    def _counters(self) -> dict[str, Counter]:
        return {
            family.name: counter
            for counter in vars(self).values()
            if isinstance(counter, Counter)
            for family in counter.describe()
        }

    def counts(self) -> Counts:
        """Every counter's current value."""
        found: Counts = {}
        for name, counter in self._counters().items():
            for family in counter.collect():
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        found[name, tuple(sorted(sample.labels.items()))] = sample.value
        return found

    def add_counts(self, deltas: Iterable[tuple[str, dict[str, str], float]]) -> None:
        """Add (family name, labels, increment) counted elsewhere; unknown names are ignored."""
        counters = self._counters()
        for name, labels, delta in deltas:
            counter = counters.get(name)
            if counter is not None and delta > 0:
                counter.labels(**labels).inc(delta)
