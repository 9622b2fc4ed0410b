"""The remote-write exporter against a receiver the test scripts: what goes on the wire
(headers, snappy, protobuf, sharding), what is retried (429, 5xx) and what is dropped (400).

The collector is a real process; the receiver is an HTTP server in the test that answers
each request with the next scripted status (204 when none is left) after a short delay, so
that requests overlap when the exporter sends several at once.
"""

from __future__ import annotations

import math
import struct
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest

from flext_observability.config import ConfigError, load_config
from flext_observability.exporters.prometheus_remote_write.proto import WriteRequest
from helpers.exposition import sample
from helpers.procs import Daemon, poll

NAME = "prometheus_remote_write"
MAX_SAMPLES = 10
SENDERS = 3


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    # (labels as sent, value, timestamp) per series
    series: list[tuple[list[tuple[str, str]], float, int]]


@dataclass
class Receiver:
    """Answers POSTs with `script` (popped in order), then 204; keeps every request."""

    script: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            status = self.script.pop(0) if self.script else 204
        time.sleep(0.05)
        request = WriteRequest.FromString(cramjam.snappy.decompress_raw(body).read())
        series = [([(label.name, label.value) for label in ts.labels], ts.samples[0].value,
                   ts.samples[0].timestamp) for ts in request.timeseries]
        assert all(len(ts.samples) == 1 for ts in request.timeseries)
        with self.lock:
            self.in_flight -= 1
            self.received.append(Received(path, headers, body, status, series))
        return status

    def mark(self) -> int:
        """Where `since` starts from to see only the requests after now."""
        with self.lock:
            return len(self.received)

    def since(self, index: int, path: str = "/receive") -> list[Received]:
        """The requests to `path` after `mark()` gave `index`."""
        with self.lock:
            return [r for r in self.received[index:] if r.path == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = state.handle(self.path, headers, body)
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def daemon(receiver: tuple[Receiver, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A collector writing every 0.5 s to the receiver, with 65 gauge series held."""
    _, url = receiver
    process = Daemon(tmp_path_factory.mktemp("rw-daemon"), {"exporters": {NAME: {
        "url": f"{url}/receive",
        "interval": "0.5s",
        "max_samples_per_request": MAX_SAMPLES,
        "num_senders": SENDERS,
        "headers": {"X-Scope-OrgID": "tenant-a"},
        "external_labels": {"cluster": "eu-1", "job": "never-wins"},
        "basic_auth": {"username": "writer", "password": "s3cret"},
        "retry": {"initial_interval": "0.05s", "max_interval": "0.2s"},
    }}})
    try:
        process.start()
        answer = httpx.post(f"{process.url}/api/v1/metrics", timeout=10, json=[
            {"name": "shard.load", "type": "gauge", "value": i / 4, "service": "svc",
             "labels": {"shard": str(i)}} for i in range(65)])
        assert answer.status_code == 202, answer.text
        yield process
    finally:
        process.stop()


def counter(daemon: Daemon, name: str, **labels: str) -> float:
    text = httpx.get(f"{daemon.url}/metrics", timeout=10).text
    return sample(text, name, exporter=NAME, **labels) or 0.0


def full_round(receiver: Receiver, start: int) -> list[Received]:
    """The requests after `start` once they hold a whole round (all 65 series, at one
    timestamp)."""

    def complete(requests: list[Received]) -> bool:
        stamps: dict[int, int] = {}
        for request in requests:
            for _, _, stamp in request.series:
                stamps[stamp] = stamps.get(stamp, 0) + 1
        return any(count >= 65 for count in stamps.values())

    return poll(lambda: receiver.since(start), complete, 15, 0.1, "a whole round")


def test_each_request_is_remote_write_1_0(
    daemon: Daemon, receiver: tuple[Receiver, str]
) -> None:
    state, _ = receiver
    requests = full_round(state, state.mark())
    for request in requests:
        headers = request.headers
        assert headers["content-encoding"] == "snappy"
        assert headers["content-type"] == "application/x-protobuf"
        assert headers["x-prometheus-remote-write-version"] == "0.1.0"
        assert headers["authorization"] == "Basic d3JpdGVyOnMzY3JldA=="  # writer:s3cret
        assert headers["x-scope-orgid"] == "tenant-a"
        assert 0 < len(request.series) <= MAX_SAMPLES
        assert len({stamp for _, _, stamp in request.series}) == 1
        for labels, _, stamp in request.series:
            assert labels[0][0] == "__name__"
            assert labels[1:] == sorted(labels[1:])
            assert abs(stamp / 1000 - time.time()) < 30
    shard7 = [(labels, value) for request in requests for labels, value, _ in request.series
              if ("shard", "7") in labels]
    # The series' own job wins over the external label of the same name.
    assert shard7[0] == ([("__name__", "shard_load"), ("cluster", "eu-1"), ("job", "svc"),
                          ("shard", "7")], 1.75)
    # 65 samples, at most 10 per request, up to 3 requests at once.
    assert state.max_in_flight > 1


def test_a_400_is_dropped_and_counted_not_retried(
    daemon: Daemon, receiver: tuple[Receiver, str]
) -> None:
    state, _ = receiver
    retries = counter(daemon, "flext_collector_export_retries_total")
    dropped = counter(daemon, "flext_collector_dropped_items_total", reason="permanent_error")
    with state.lock:
        state.script[:] = [400] * 4
        start = len(state.received)
    refused = poll(lambda: [r for r in state.since(start) if r.status == 400],
                   lambda found: len(found) == 4, 15, 0.1, "four requests answered 400")
    samples = sum(len(request.series) for request in refused)
    poll(lambda: counter(daemon, "flext_collector_dropped_items_total",
                         reason="permanent_error"),
         lambda now: now == dropped + samples, 10, 0.1, f"{samples} samples dropped")
    full_round(state, state.mark())
    assert counter(daemon, "flext_collector_export_retries_total") == retries
    # A refused request is not sent again: its samples arrive with the next round's time.
    bodies = {request.body for request in refused}
    assert not [r for r in state.since(start) if r.status != 400 and r.body in bodies]


def test_429_and_5xx_are_retried_with_the_same_samples(
    daemon: Daemon, receiver: tuple[Receiver, str]
) -> None:
    state, _ = receiver
    retries = counter(daemon, "flext_collector_export_retries_total")
    failures = counter(daemon, "flext_collector_export_failures_total")
    dropped = counter(daemon, "flext_collector_dropped_items_total", reason="permanent_error")
    exported = counter(daemon, "flext_collector_exported_items_total")
    with state.lock:
        state.script[:] = [503, 429, 500]
        start = len(state.received)
    failed = poll(lambda: [r for r in state.since(start) if r.status >= 500 or r.status == 429],
                  lambda found: len(found) == 3, 15, 0.1, "three requests answered 5xx/429")
    resent = poll(lambda: {r.body for r in state.since(start) if r.status == 204},
                  lambda ok: {r.body for r in failed} <= ok, 15, 0.1, "the same bodies accepted")
    assert resent
    assert counter(daemon, "flext_collector_export_retries_total") == retries + 3
    assert counter(daemon, "flext_collector_export_failures_total") == failures + 3
    assert counter(daemon, "flext_collector_dropped_items_total",
                   reason="permanent_error") == dropped
    assert counter(daemon, "flext_collector_exported_items_total") > exported
    state_now = httpx.get(f"{daemon.url}/readyz", timeout=10).json()["exporters"][NAME]
    assert state_now["state"] == "up"
    assert state_now["last_success_at"] > time.time() - 30


def test_a_series_that_expired_gets_one_staleness_marker(
    daemon_factory: Any, receiver: tuple[Receiver, str]
) -> None:
    """As a scrape would: the series is marked stale (Prometheus' NaN) once, then not sent."""
    state, url = receiver
    start = state.mark()
    short = daemon_factory({"exporters": {
        "prometheus": {"metric_expiration": "1s"},
        NAME: {"url": f"{url}/stale", "interval": "0.2s"},
    }})
    answer = httpx.post(f"{short.url}/api/v1/metrics", timeout=10, json={
        "name": "fleeting", "type": "gauge", "value": 3, "service": "svc"})
    assert answer.status_code == 202, answer.text
    # Health series do not expire: the rounds go on after `fleeting` is gone.
    answer = httpx.post(f"{short.url}/api/v1/health", timeout=10, json={
        "service": "svc", "status": "healthy"})
    assert answer.status_code == 202, answer.text

    def values() -> list[float]:
        return [value for request in state.since(start, "/stale")
                for labels, value, _ in request.series if labels[0] == ("__name__", "fleeting")]

    found = poll(values, lambda v: len(v) > 1 and math.isnan(v[-1]), 15, 0.1, "a stale marker")
    assert found[:-1] == [3.0] * (len(found) - 1)
    assert struct.pack("<d", found[-1]) == struct.pack("<Q", 0x7FF0000000000002)
    rounds = len(state.since(start, "/stale"))
    poll(lambda: len(state.since(start, "/stale")), lambda n: n >= rounds + 3, 10, 0.1,
         "three more rounds")
    assert values() == found


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(("section", "message"), [
    ("{url: ftp://x}", "exporters.prometheus_remote_write.url"),
    ("{url: 'http://p:9090/api/v1/write', headers: {Content-Encoding: gzip}}",
     "header 'Content-Encoding' is set by the exporter"),
    ("{url: 'http://p:9090/api/v1/write', external_labels: {__x: y}}",
     "'__x' is not a label name"),
    ("{url: 'http://p:9090/api/v1/write', bearer_token: t, basic_auth: {username: u, "
     "password: p}}", "set only one of basic_auth, bearer_token"),
    ("{url: 'http://p:9090/api/v1/write', max_samples_per_request: 0}",
     "max_samples_per_request"),
])
def test_bad_settings_are_refused_with_their_path(tmp_path: Path, section: str,
                                                 message: str) -> None:
    path = write(tmp_path, f"exporters:\n  prometheus_remote_write: {section}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_it_needs_the_prometheus_exporter(tmp_path: Path) -> None:
    path = write(tmp_path, """
        exporters:
          prometheus: {enabled: false}
          prometheus_remote_write: {url: 'http://p:9090/api/v1/write'}
    """)
    with pytest.raises(ConfigError, match=r"needs prometheus\.enabled"):
        load_config(path)
