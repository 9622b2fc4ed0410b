"""The Prometheus remote-write exporter: every `interval`, the current value of every held
series, to a remote-write 1.0 receiver.

A round is what a scrape of /metrics would read (the Prometheus exporter's store, and the
service health series), all at one timestamp: samples named and labelled as /metrics
shows them (counters' `_total`, histograms' `_bucket`/`_sum`/`_count`, `target_info`),
plus `external_labels` where a series has no label of that name. The round is cut into
requests of at most `max_samples_per_request` samples, up to `num_senders` of them in
flight, as Prometheus' queue manager shards; each is a snappy-compressed (block format)
protobuf `WriteRequest`. A series sent by the last round and gone from this one (expired)
gets Prometheus' staleness marker once, as a scrape would write.

Each request is retried as the Collector's exporter does (`pipeline.exporter.Delivery`):
429, 5xx, timeouts and connection errors with backoff; any other answer >= 400 is
permanent: its samples are counted as dropped and not sent again. Rounds do not overlap:
a round still retrying when the next is due delays it, and the next round reads the
values of its own time (the intervals a downstream outage spans have no samples, as a
failed scrape has none).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, Protocol

import cramjam
import httpx
from prometheus_client.samples import Sample

from flext_observability.exporters.prometheus_remote_write.config import (
    PrometheusRemoteWriteConfig,
)
from flext_observability.exporters.prometheus_remote_write.proto import TimeSeries, WriteRequest
from flext_observability.pipeline.exporter import Delivery, Interrupted
from flext_observability.retry import ANY_5XX_RETRYABLE_HTTP_STATUS, PermanentError
from flext_observability.telemetry import SelfTelemetry
from flext_observability.tls import client_ssl_context

log = logging.getLogger(__name__)

NAME = "prometheus_remote_write"
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "flext-observability",
}

# Prometheus' staleness marker: the NaN a scrape writes for a series that is gone.
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]

# A series' labels as remote write wants them: `__name__` and the others sorted by name.
SeriesLabels = tuple[tuple[str, str], ...]
# A sample's name and labels as the exposition has them (the cache's key: no sorting).
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


class SampleSource(Protocol):
    """What /metrics reads: the metric families as they stand now."""

    def collect(self) -> Iterable[Any]: ...


def series_labels(name: str, labels: dict[str, str], external: dict[str, str]) -> SeriesLabels:
    """`__name__` and the sample's labels, plus the external labels it does not have."""
    if external:
        labels = {**external, **labels}
    return (("__name__", name), *sorted(labels.items()))


def _labels_only(labels: SeriesLabels) -> bytes:
    """A one-series `WriteRequest` holding only the series' labels, serialized."""
    series = TimeSeries(labels=[{"name": name, "value": value} for name, value in labels])
    return bytes(WriteRequest(timeseries=[series]).SerializeToString())


class Encoder:
    """Samples -> `WriteRequest` bodies, the labels of every series encoded once.

    Serialized messages of one type concatenate into one merged message, so a request is
    the join of each series' cached labels-only request, parsed once, its samples then
    added in order. The cache keeps the series of the last round only.
    """

    def __init__(self, external_labels: dict[str, str]) -> None:
        self._external = external_labels
        self._cache: dict[SampleKey, bytes] = {}
        self._next: dict[SampleKey, bytes] = {}

    def encode(self, samples: list[Sample], timestamp_ms: int) -> bytes:
        """One request's body: the samples at `timestamp_ms`, protobuf, snappy-compressed."""
        parts = []
        cache, found = self._cache, self._next
        for sample in samples:
            key = (sample.name, tuple(sample.labels.items()))
            part = cache.get(key)
            if part is None:
                part = _labels_only(series_labels(sample.name, sample.labels, self._external))
            found[key] = part
            parts.append(part)
        return _body(parts, [sample.value for sample in samples], timestamp_ms)

    def gone(self) -> list[bytes]:
        """The series the last round sent and this one did not (as `encode` caches them)."""
        return [part for key, part in self._cache.items() if key not in self._next]

    def end_round(self) -> None:
        """Forget the series the round just ended did not send."""
        self._cache, self._next = self._next, {}


def stale_markers(parts: list[bytes], timestamp_ms: int) -> bytes:
    """A request marking the series of `parts` (from `Encoder.gone`) stale at `timestamp_ms`."""
    return _body(parts, [STALE_NAN] * len(parts), timestamp_ms)


def _body(parts: list[bytes], values: list[float], timestamp_ms: int) -> bytes:
    request = WriteRequest.FromString(b"".join(parts))
    for series, value in zip(request.timeseries, values, strict=True):
        series.samples.add(value=value, timestamp=timestamp_ms)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def chunks(items: Iterator[Sample], size: int) -> Iterator[list[Sample]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


class PrometheusRemoteWriteExporter:
    """Sends a round of samples every `interval` until shutdown."""

    name = NAME

    def __init__(
        self,
        url: str,
        config: PrometheusRemoteWriteConfig,
        sources: Sequence[SampleSource],
        telemetry: SelfTelemetry,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self.config = config
        self._sources = sources
        self._telemetry = telemetry
        self._clock = clock
        self._wall = wall_clock
        self._stop = asyncio.Event()
        self.delivery = Delivery(
            NAME, NAME, telemetry, config.retry, config.timeout, self._stop, self._report_up,
            ANY_5XX_RETRYABLE_HTTP_STATUS,
        )
        self._encoder = Encoder(config.external_labels)
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_success: float | None = None
        self._last_round: dict[str, Any] = {}

    def _report_up(self) -> None:
        self._telemetry.exporter_up.labels(NAME).set(1 if self.delivery.up else 0)

    def state(self) -> dict[str, Any]:
        state = self.delivery.state()
        if self._task is None:
            state["state"] = "stopped"
        state["last_success_at"] = self._last_success
        state["last_round"] = self._last_round
        return state

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stop.clear()
        headers = {**self.config.headers, **HEADERS}
        if self.config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.config.bearer_token}"
        basic = self.config.basic_auth
        self._client = httpx.AsyncClient(
            headers=headers,
            auth=None if basic is None else httpx.BasicAuth(basic.username, basic.password),
            timeout=self.config.timeout,
            verify=client_ssl_context(self.config.tls),
            trust_env=False,
        )
        self._report_up()
        self._task = asyncio.create_task(self._run(), name=NAME)

    async def shutdown(self, deadline: float) -> None:
        """Let the requests in flight finish until `deadline` (on `clock`); no new round."""
        if self._task is None:
            return
        self._stop.set()
        done, _ = await asyncio.wait({self._task}, timeout=max(0.0, deadline - self._clock()))
        if not done:
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        interval = self.config.interval
        due = self._clock()
        while not self._stop.is_set():
            await self._round()
            due += interval
            late = self._clock() - due
            if late > 0:
                log.warning("%s: a round took %.1fs past its interval (%.1fs); the next one "
                            "starts now", NAME, late, interval)
                due = self._clock()
            try:
                await asyncio.wait_for(self._stop.wait(), due - self._clock())
            except TimeoutError:
                continue

    async def _round(self) -> None:
        started = self._clock()
        timestamp_ms = int(self._wall() * 1000)
        # The families are read at once (the store changes between awaits); their samples
        # are plain values from then on, encoded a request at a time.
        families = [family for source in self._sources for family in source.collect()]
        samples = (sample for family in families for sample in family.samples)
        slots = asyncio.Semaphore(self.config.num_senders)
        sends: list[asyncio.Task[int]] = []
        total = 0
        size = self.config.max_samples_per_request
        for chunk in chunks(samples, size):
            if not await self._acquire(slots):
                break
            body = self._encoder.encode(chunk, timestamp_ms)
            total += len(chunk)
            sends.append(asyncio.create_task(self._send(body, len(chunk), slots)))
        else:
            # As a scrape does, a series that is gone gets a staleness marker, once.
            gone = self._encoder.gone()
            for start in range(0, len(gone), size):
                if not await self._acquire(slots):
                    break
                parts = gone[start:start + size]
                total += len(parts)
                body = stale_markers(parts, timestamp_ms)
                sends.append(asyncio.create_task(self._send(body, len(parts), slots)))
        sent = sum(await asyncio.gather(*sends))
        self._encoder.end_round()
        self._last_round = {
            "samples": total,
            "sent": sent,
            "requests": len(sends),
            "seconds": round(self._clock() - started, 3),
        }

    async def _acquire(self, slots: asyncio.Semaphore) -> bool:
        """A sender slot; False (no slot taken) once shutdown began."""
        await slots.acquire()
        if self._stop.is_set():
            slots.release()
            return False
        return True

    async def _send(self, body: bytes, samples: int, slots: asyncio.Semaphore) -> int:
        """Deliver one request; the samples the receiver took (0 when refused or stopped)."""
        try:
            await self.delivery.deliver(partial(self._post, body))
        except PermanentError as error:
            self._telemetry.dropped.labels(NAME, error.reason).inc(samples)
            log.error("%s: dropped %d samples the receiver refused: %s", NAME, samples, error)
            return 0
        except Interrupted:
            return 0
        finally:
            slots.release()
        self._last_success = self._wall()
        self._telemetry.exported.labels(NAME).inc(samples)
        self._telemetry.last_success.labels(NAME).set(self._last_success)
        return samples

    async def _post(self, body: bytes) -> None:
        if self._client is None:
            raise RuntimeError("the remote-write exporter is not started")
        response = await self._client.post(self._url, content=body)
        response.raise_for_status()


def create(
    config: PrometheusRemoteWriteConfig, sources: Sequence[SampleSource],
    telemetry: SelfTelemetry,
) -> PrometheusRemoteWriteExporter | None:
    """The exporter of `exporters.prometheus_remote_write`; None when no `url` is set."""
    if config.url is None:
        return None
    return PrometheusRemoteWriteExporter(config.url, config, sources, telemetry)
