"""`FlextObservabilityClient`: sends a service's telemetry to the collector in the background.

The caller only appends to a bounded buffer (one per signal) under a short lock: O(1), no
I/O, no exception. A daemon thread posts batches to `POST /api/v1/{signal}` over one
keep-alive `httpx.Client`; the decorator's counters and histograms (`record_call`) are kept
in the client between passes, the histograms sent as OTLP delta histograms to `/v1/metrics`.
Answers are classified once, here: 2xx sent; 429/502/503/504 and connection errors retried
with jittered exponential backoff (honouring `Retry-After`, capped); any other answer is
permanent, so the batch is counted as failed and logged once. When a buffer is full the
oldest item is dropped and counted. Every item given to the client ends up counted exactly
once in `stats`: sent, failed or dropped.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import random
import sys
import threading
import time
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple, Protocol, runtime_checkable

import httpx
from pydantic_core import to_json

from flext_observability.retry import Backoff, Intervals, RetryableError, classify_status
from flext_observability.routes import NATIVE, OTLP
from flext_observability.sdk.config import FlextObservabilityConfig, default_config
from flext_observability.sdk.otlp import HistogramKey, HistogramSums, otlp_histograms

log = logging.getLogger("flext_observability.sdk")

SIGNAL_PATHS = {signal.value: route.path for signal, route in NATIVE.items()}
OTLP_METRICS_PATH = OTLP["metrics"].path
PROTOBUF = {"Content-Type": "application/x-protobuf"}
INITIAL_BACKOFF = 0.5  # seconds before the first retry; doubles per attempt
BACKOFF_JITTER = 0.5  # each backoff is scaled by a random factor in [1 - j, 1 + j)
USER_AGENT = "flext-observability-sdk/0.1.0"


@runtime_checkable
class Payload(Protocol):
    """What the client buffers: an item of a signal that renders its native JSON object."""

    @property
    def signal(self) -> str: ...

    def to_payload(self) -> dict[str, Any]: ...


class CounterKey(NamedTuple):
    """A counter series the client sums locally between flushes (see `record_call`)."""

    name: str
    service: str
    instance: str
    labels: tuple[tuple[str, str], ...]


class _CounterSample:
    __slots__ = ("key", "value")
    signal = "metrics"

    def __init__(self, key: CounterKey, value: float) -> None:
        self.key = key
        self.value = value

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "name": self.key.name,
            "type": "counter",
            "value": self.value,
            "service": self.key.service,
            "labels": dict(self.key.labels),
        }
        if self.key.instance:
            payload["instance"] = self.key.instance
        return payload


@dataclass(frozen=True, slots=True)
class ClientStats:
    """Item counts since the client was made; `enqueued == sent + failed + dropped + buffered`
    once no batch is in flight. A locally summed counter series counts as one item per flush
    pass. `retried` counts requests sent again."""

    enqueued: int
    sent: int
    failed: int
    dropped: int
    retried: int
    buffered: int


class Outcome(Enum):
    SENT = "sent"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: Outcome
    detail: str = ""
    retry_after: float | None = None


def classify(response: httpx.Response) -> Answer:
    error = classify_status(
        response.status_code, response.headers.get("retry-after"), response.text[:500]
    )
    if error is None:
        return Answer(Outcome.SENT)
    if isinstance(error, RetryableError):
        return Answer(Outcome.RETRY, str(error), error.retry_after)
    return Answer(Outcome.PERMANENT, str(error))


class FlextObservabilityClient:
    """Buffers items and posts them from a daemon thread; see the module docstring.

    `clock` (monotonic seconds), `sleep` (an interruptible wait; returns early when the
    client closes) and `random` (in [0, 1), for jitter) can be injected so that tests do
    not wait on wall time. The worker starts with the first item; `close()` (also run at
    interpreter exit) sends what is left within `config.exit_flush_deadline` seconds.
    """

    def __init__(
        self,
        config: FlextObservabilityConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        random: Callable[[], float] = random.random,
    ) -> None:
        self.config = config if config is not None else default_config()
        self._clock = clock
        self._injected_sleep = sleep
        self._random = random
        self._batch_size = self.config.batch_size
        self._buffers: dict[str, deque[Payload]] = {
            signal: deque(maxlen=self.config.buffer_limit) for signal in SIGNAL_PATHS
        }
        self._counters: dict[CounterKey, float] = {}
        self._histograms: dict[HistogramKey, HistogramSums] = {}
        self._histograms_since = time.time_ns()
        self._enqueued = self._sent = self._failed = self._dropped = self._retried = 0
        self._drops_logged = 0
        self._failing_batches = 0
        self._in_flight = 0
        self._closed = False
        self._deadline = math.inf
        self._thread: threading.Thread | None = None
        self._close_hooks: list[Callable[[], None]] = []
        self._exit_registered = False
        self._init_sync()
        if hasattr(os, "register_at_fork"):
            ref = weakref.WeakMethod(self._after_fork_in_child)
            os.register_at_fork(after_in_child=lambda: _call_alive(ref))

    def _init_sync(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_cond = threading.Condition()
        self._flush_requested = 0
        self._flush_done = 0

    def _after_fork_in_child(self) -> None:
        # The worker does not exist in the child; what the parent buffered is the parent's.
        self._init_sync()
        self._thread = None
        self._counters = {}
        self._histograms = {}
        for buffer in self._buffers.values():
            buffer.clear()

    # -- the caller's side: O(1), no I/O, no exception ---------------------------------

    def send(self, item: Payload) -> None:
        """Queue one item (an entity or an SDK payload) for the next batch of its signal."""
        with self._lock:
            self._enqueued += 1
            if self._closed:
                self._dropped += 1
                return
            full = self._append(item)
        if self._thread is None:
            self._start()
        if full and not self._wake.is_set():
            self._wake.set()

    def record_call(
        self, counter: CounterKey, histogram: HistogramKey, value: float, *items: Payload
    ) -> None:
        """Add 1 to a counter series, observe `value` in a histogram series and queue items,
        under one lock (the decorator's per-call path). Both series are kept locally: each
        becomes one item per flush pass, however many calls it took."""
        with self._lock:
            self._enqueued += len(items)
            if self._closed:
                self._enqueued += 2
                self._dropped += len(items) + 2
                return
            self._counters[counter] = self._counters.get(counter, 0.0) + 1.0
            sums = self._histograms.get(histogram)
            if sums is None:
                sums = self._histograms[histogram] = HistogramSums(len(histogram.bounds))
            sums.counts[bisect_left(histogram.bounds, value)] += 1
            sums.count += 1
            sums.sum += value
            full = False
            for item in items:
                full = self._append(item) or full
        if self._thread is None:
            self._start()
        if full and not self._wake.is_set():
            self._wake.set()

    def _append(self, item: Payload) -> bool:
        """Under the lock: append, dropping (and counting) the oldest when full."""
        buffer = self._buffers[item.signal]
        if len(buffer) == buffer.maxlen:
            self._dropped += 1
        buffer.append(item)
        return len(buffer) >= self._batch_size

    @property
    def closed(self) -> bool:
        """True once `close()` was called: what is given to the client is dropped."""
        with self._lock:
            return self._closed

    @property
    def stats(self) -> ClientStats:
        with self._lock:
            return ClientStats(
                enqueued=self._enqueued,
                sent=self._sent,
                failed=self._failed,
                dropped=self._dropped,
                retried=self._retried,
                buffered=sum(len(b) for b in self._buffers.values()),
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything buffered now; wait at most `timeout` seconds (None: no limit).

        True when every batch was accepted by the collector in time. Blocks the calling
        thread: from a coroutine use `await asyncio.to_thread(client.flush, 5)`.
        """
        with self._lock:
            idle = not (self._counters or self._histograms or self._in_flight
                        or any(self._buffers.values()))
            closed = self._closed
            lost = self._failed + self._dropped
        if idle:
            return True
        if closed:
            return False
        if self._thread is None:
            self._start()
        with self._flush_cond:
            self._flush_requested += 1
            generation = self._flush_requested
        self._wake.set()
        with self._flush_cond:
            done = self._flush_cond.wait_for(lambda: self._flush_done >= generation, timeout)
        return done and self._lost() == lost

    def _lost(self) -> int:
        with self._lock:
            return self._failed + self._dropped

    def start(self) -> None:
        """Start the worker now (it also starts with the first item); no-op once closed."""
        if self._thread is None:
            self._start()

    def on_close(self, hook: Callable[[], None]) -> None:
        """Run `hook` once when the client closes (also at interpreter exit), before the last
        send, so that it can still `send()` what it holds."""
        with self._lock:
            self._close_hooks.append(hook)
        self._register_exit()

    def close(self, timeout: float | None = None) -> bool:
        """Stop the worker after one last attempt to send what is buffered, within `timeout`
        seconds (default `config.exit_flush_deadline`). Safe twice and without any item.

        True when the worker stopped in time and nothing was lost since the call. Items
        given to the client after `close()` are counted as dropped.
        """
        deadline = self.config.exit_flush_deadline if timeout is None else timeout
        with self._lock:
            hooks, self._close_hooks = self._close_hooks, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("flext-observability client: a close hook failed")
        with self._lock:
            thread = self._thread
            if self._closed:
                return thread is None or not thread.is_alive()
            self._closed = True
            self._deadline = self._clock() + deadline
            lost = self._failed + self._dropped
        atexit.unregister(self.close)
        if thread is None:
            return True
        self._stop.set()
        self._wake.set()
        thread.join(deadline + 0.5)
        return not thread.is_alive() and self._lost() == lost

    # -- the worker ------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._run, name="flext-observability-client", daemon=True
            )
            self._thread.start()
        self._register_exit()

    def _register_exit(self) -> None:
        with self._lock:
            if self._exit_registered:
                return
            self._exit_registered = True
        atexit.register(self.close)

    def _http_client(self) -> httpx.Client:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self.config.token is not None:
            headers["Authorization"] = f"Bearer {self.config.token.get_secret_value()}"
        return httpx.Client(
            base_url=self.config.endpoint, headers=headers, timeout=self.config.timeout
        )

    def _run(self) -> None:
        try:
            http = self._http_client()
        except Exception:
            log.exception("flext-observability client: cannot create its HTTP client; "
                          "telemetry is dropped from now on")
            with self._lock:
                self._closed = True
            self._drop_leftovers()
            self._passed(sys.maxsize)
            return
        with http:
            while True:
                self._wake.wait(self.config.flush_interval)
                self._wake.clear()
                stopping = self._stop.is_set()
                with self._flush_cond:
                    generation = self._flush_requested
                try:
                    self._export(http)
                except Exception:
                    log.exception("flext-observability client: export pass failed")
                if stopping:
                    self._drop_leftovers()
                self._log_drops()
                # After the last pass no flush() may wait: the worker is gone.
                self._passed(sys.maxsize if stopping else generation)
                if stopping:
                    return

    def _passed(self, generation: int) -> None:
        """Wake the `flush()` calls that asked for a pass up to `generation`."""
        with self._flush_cond:
            self._flush_done = generation
            self._flush_cond.notify_all()

    def _export(self, http: httpx.Client) -> None:
        """One pass: the counter sums and histograms, then every item buffered when the pass
        began."""
        now = time.time_ns()
        with self._lock:
            counters, self._counters = self._counters, {}
            for key, value in counters.items():
                self._enqueued += 1
                self._append(_CounterSample(key, value))
            histograms, self._histograms = self._histograms, {}
            since, self._histograms_since = self._histograms_since, now
            self._enqueued += len(histograms)
        if histograms:
            with self._lock:
                self._in_flight = len(histograms)
            try:
                self._send(http, "histograms", OTLP_METRICS_PATH,
                           otlp_histograms(histograms, since, now), len(histograms), PROTOBUF)
            finally:
                with self._lock:
                    self._in_flight = 0
        for signal, buffer in self._buffers.items():
            pending = len(buffer)
            while pending > 0:
                with self._lock:
                    batch = [buffer.popleft() for _ in range(min(self._batch_size, len(buffer)))]
                    self._in_flight = len(batch)
                if not batch:
                    break
                pending -= len(batch)
                try:
                    self._deliver(http, signal, batch)
                finally:
                    with self._lock:
                        self._in_flight = 0

    def _deliver(self, http: httpx.Client, signal: str, batch: list[Payload]) -> None:
        """Post one batch until it is accepted, refused for good, or out of retries."""
        try:
            body = to_json([item.to_payload() for item in batch])
        except Exception:
            log.exception("flext-observability client: cannot encode %d %s", len(batch), signal)
            self._failed += len(batch)
            return
        self._send(http, signal, SIGNAL_PATHS[signal], body, len(batch))

    def _send(
        self, http: httpx.Client, signal: str, path: str, body: bytes, items: int,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Post `body` (`items` items) until it is accepted, refused for good, or out of
        retries; count the items accordingly."""
        started = self._clock()
        attempt = 0
        backoff = Backoff(
            Intervals(INITIAL_BACKOFF, self.config.max_retry_delay, 2.0, BACKOFF_JITTER),
            self._random,
        )
        while True:
            timeout = self.config.timeout
            if self._stop.is_set():
                remaining = self._deadline - self._clock()
                if remaining <= 0:
                    with self._lock:
                        self._dropped += items
                    return
                timeout = min(timeout, remaining)
            answer = self._post(http, path, body, timeout, headers)
            if answer.outcome is Outcome.SENT:
                self._sent += items
                if self._failing_batches:
                    log.info("flext-observability client: %s reachable again after %d failed "
                             "batch(es)", self.config.endpoint, self._failing_batches)
                    self._failing_batches = 0
                return
            if answer.outcome is Outcome.RETRY:
                # The downstream's Retry-After is honoured, capped as every wait is.
                delay = min(backoff.next(answer.retry_after), self.config.max_retry_delay)
                elapsed = self._clock() - started
                if not self._stop.is_set() and elapsed + delay <= self.config.max_retry_elapsed:
                    log.debug("flext-observability client: retrying %s in %.2fs: %s",
                              signal, delay, answer.detail)
                    (self._injected_sleep or self._stop.wait)(delay)
                    self._retried += 1
                    attempt += 1
                    continue
            self._failed += items
            self._failing_batches += 1
            # One warning per outage; the batches after it are counted in stats["failed"].
            log.log(
                logging.WARNING if self._failing_batches == 1 else logging.DEBUG,
                "flext-observability client: %d %s not sent to %s after %d attempt(s): %s",
                items, signal, self.config.endpoint, attempt + 1, answer.detail,
            )
            return

    def _post(
        self, http: httpx.Client, path: str, body: bytes, timeout: float,
        headers: dict[str, str] | None,
    ) -> Answer:
        try:
            response = http.post(path, content=body, timeout=timeout, headers=headers)
        except httpx.TransportError as exc:
            return Answer(Outcome.RETRY, f"{type(exc).__name__}: {exc}")
        except httpx.HTTPError as exc:
            return Answer(Outcome.PERMANENT, f"{type(exc).__name__}: {exc}")
        return classify(response)

    def _drop_leftovers(self) -> None:
        with self._lock:
            for buffer in self._buffers.values():
                self._dropped += len(buffer)
                buffer.clear()
            self._dropped += len(self._counters) + len(self._histograms)
            self._enqueued += len(self._counters) + len(self._histograms)
            self._counters = {}
            self._histograms = {}

    def _log_drops(self) -> None:
        with self._lock:
            dropped = self._dropped
        if dropped > self._drops_logged:
            log.warning(
                "flext-observability client: dropped %d item(s) (%d in total): buffer of %d "
                "per signal full, or not sent before close",
                dropped - self._drops_logged, dropped, self.config.buffer_limit,
            )
            self._drops_logged = dropped


def _call_alive(ref: weakref.WeakMethod[Callable[[], None]]) -> None:
    method = ref()
    if method is not None:
        method()
