"""The background client against a real local HTTP server: batching, bounds, retries, close."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from email.utils import formatdate

import pytest

from flext_observability import (
    FlextObservabilityClient,
    FlextObservabilityConfig,
    flext_create_alert,
    flext_create_metric,
)
from flext_observability.retry import parse_retry_after


class FakeClock:
    """A monotonic clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def make_client():
    clients: list[FlextObservabilityClient] = []

    def make(endpoint: str, clock: FakeClock | None = None, **overrides):
        settings = {"service_name": "sdk-test", "flush_interval": 60.0, **overrides}
        config = FlextObservabilityConfig(endpoint=endpoint, **settings)
        if clock is None:
            client = FlextObservabilityClient(config)
        else:
            client = FlextObservabilityClient(
                config, clock=clock, sleep=clock.sleep, random=lambda: 0.5
            )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=1)


def gauge(value: float):
    return flext_create_metric("queue_depth", value, service="sdk-test").unwrap()


def test_batches_of_batch_size(stub_collector, make_client):
    client = make_client(stub_collector.url, batch_size=4)
    for i in range(10):
        client.send(gauge(i))
    assert client.flush(5)
    sizes = [len(r.items) for r in stub_collector.requests]
    assert max(sizes) == 4  # a full batch wakes the worker early, so sizes may vary below 4
    assert sum(sizes) == 10
    assert [m["value"] for m in stub_collector.items("metrics")] == list(range(10))
    stats = client.stats
    assert (stats.enqueued, stats.sent, stats.failed, stats.dropped, stats.buffered) == (
        10, 10, 0, 0, 0
    )


def test_each_signal_goes_to_its_route(stub_collector, make_client):
    client = make_client(stub_collector.url)
    client.send(gauge(1))
    client.send(flext_create_alert("A", service="sdk-test").unwrap())
    assert client.flush(5)
    assert [r.path for r in stub_collector.requests] == ["/api/v1/metrics", "/api/v1/alerts"]


def test_token_and_json_headers(stub_collector, make_client):
    client = make_client(stub_collector.url, token="s3cret")
    client.send(gauge(1))
    assert client.flush(5)
    headers = {k.lower(): v for k, v in stub_collector.requests[0].headers.items()}
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["content-type"] == "application/json"


def test_overflow_drops_the_oldest_and_counts(stub_collector, make_client):
    client = make_client(stub_collector.url, buffer_limit=5, batch_size=100)
    for i in range(8):
        client.send(gauge(i))
    stats = client.stats
    assert (stats.enqueued, stats.dropped, stats.buffered) == (8, 3, 5)
    assert client.flush(5)  # True: nothing was lost after the call
    assert [m["value"] for m in stub_collector.items("metrics")] == [3, 4, 5, 6, 7]


@pytest.mark.parametrize(
    ("status", "retry_after", "expected_sleep"),
    [
        (503, "7", 7.0),
        (429, "2", 2.0),
        (503, "3600", 30.0),  # capped at max_retry_delay
        (502, None, 0.5),  # no Retry-After: INITIAL_BACKOFF with the jitter factor 1.0
        (504, "not a date", 0.5),
    ],
)
def test_retry_honours_retry_after(stub_collector, make_client, status, retry_after,
                                   expected_sleep):
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    stub_collector.answers = [(status, headers)]
    clock = FakeClock()
    client = make_client(stub_collector.url, clock=clock, max_retry_delay=30)
    client.send(gauge(1))
    assert client.flush(5)
    assert clock.sleeps == [expected_sleep]
    stats = client.stats
    assert (stats.sent, stats.retried, stats.failed) == (1, 1, 0)
    assert len(stub_collector.requests) == 1  # the refused attempt kept nothing


def test_retry_after_as_an_http_date():
    assert parse_retry_after(formatdate(1_000_030, usegmt=True), now=lambda: 1_000_000) == 30
    assert parse_retry_after(formatdate(999_000, usegmt=True), now=lambda: 1_000_000) == 0
    assert parse_retry_after(" 12 ") == 12
    assert parse_retry_after(None) is None


def test_backoff_grows_until_the_retry_budget_is_spent(unused_endpoint, make_client, caplog):
    clock = FakeClock()
    client = make_client(unused_endpoint, clock=clock, max_retry_elapsed=5)
    client.send(gauge(1))
    client.send(gauge(2))
    assert client.flush(5) is False
    assert clock.sleeps == [0.5, 1.0, 2.0]  # the next, 4.0, would pass 5 s in total
    stats = client.stats
    assert (stats.sent, stats.failed, stats.retried, stats.buffered) == (0, 2, 3, 0)
    assert caplog.text.count("not sent to") == 1  # logged once for the batch


@pytest.mark.parametrize("status", [400, 401, 413, 415, 422, 500])
def test_a_permanent_refusal_is_counted_not_retried(stub_collector, make_client, caplog,
                                                    status):
    stub_collector.answers = [(status, {})]
    clock = FakeClock()
    client = make_client(stub_collector.url, clock=clock, batch_size=2)
    for i in range(4):
        client.send(gauge(i))
    assert client.flush(5) is False
    assert clock.sleeps == []
    stats = client.stats
    assert (stats.sent, stats.failed, stats.retried) == (2, 2, 0)
    assert f"HTTP {status}" in caplog.text
    assert [m["value"] for m in stub_collector.items("metrics")] == [2, 3]


def test_no_collector_flush_times_out_and_close_is_fast(unused_endpoint, make_client):
    client = make_client(unused_endpoint, flush_interval=0.05)
    for i in range(10):
        client.send(gauge(i))
    started = time.monotonic()
    assert client.flush(0.3) is False
    assert time.monotonic() - started < 2
    started = time.monotonic()
    client.close(timeout=0.5)  # interrupts the backoff sleep
    assert time.monotonic() - started < 1.5
    stats = client.stats
    assert stats.sent == 0
    assert stats.enqueued == stats.failed + stats.dropped == 10


def test_close_sends_what_is_left(stub_collector, make_client):
    client = make_client(stub_collector.url)
    for i in range(3):
        client.send(gauge(i))
    assert client.close()
    assert len(stub_collector.items("metrics")) == 3


def test_close_is_safe_twice_and_without_use(stub_collector, make_client):
    unused = make_client(stub_collector.url)
    assert unused.close()
    assert unused.close()
    client = make_client(stub_collector.url)
    client.send(gauge(1))
    assert client.close()
    assert client.close()


def test_items_after_close_are_dropped_and_counted(stub_collector, make_client):
    client = make_client(stub_collector.url)
    client.close()
    client.send(gauge(1))
    stats = client.stats
    assert (stats.enqueued, stats.dropped, stats.buffered) == (1, 1, 0)


def test_concurrent_senders_are_all_accounted(stub_collector, make_client):
    client = make_client(stub_collector.url, batch_size=50, flush_interval=0.01)

    def produce(base: int) -> None:
        for i in range(500):
            client.send(gauge(base + i))

    threads = [threading.Thread(target=produce, args=(n * 1000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.flush(10)
    assert client.stats.sent == 2000
    values = sorted(m["value"] for m in stub_collector.items("metrics"))
    assert values == sorted(n * 1000 + i for n in range(4) for i in range(500))


async def test_usable_from_asyncio(stub_collector, make_client):
    client = make_client(stub_collector.url)

    async def produce(n: int) -> None:
        client.send(gauge(n))
        await asyncio.sleep(0)

    await asyncio.gather(*(produce(n) for n in range(20)))
    assert await asyncio.to_thread(client.flush, 5)
    assert len(stub_collector.items("metrics")) == 20


def test_send_does_not_wait_for_a_slow_collector(stub_collector, make_client):
    stub_collector.answers = [(503, {"Retry-After": "1"})] * 3
    client = make_client(stub_collector.url, flush_interval=0.01, batch_size=1)
    started = time.perf_counter()
    for i in range(1000):
        client.send(gauge(i))
    assert (time.perf_counter() - started) / 1000 < 0.001


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_sends_its_own_items_only(stub_collector, make_client):
    client = make_client(stub_collector.url)
    client.send(gauge(0))
    assert client.flush(5)  # the parent's worker runs
    client.send(gauge(1))  # buffered in the parent
    pid = os.fork()
    if pid == 0:
        client.send(gauge(100))
        os._exit(0 if client.flush(5) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [m["value"] for m in stub_collector.items("metrics")] == [0, 100]
    assert client.flush(5)
    assert [m["value"] for m in stub_collector.items("metrics")] == [0, 100, 1]
