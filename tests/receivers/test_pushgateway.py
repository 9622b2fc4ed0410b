"""The push API against the real Pushgateway (Debian's `prometheus-pushgateway`) as the oracle:
the same pushes to both, the same answers and the same series scraped; then
prometheus_client's push functions, durability (restart, kill -9), expiry, auth and tenants.
"""

from __future__ import annotations

import gzip
import math
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import (
    delete_from_gateway,
    push_to_gateway,
    pushadd_to_gateway,
)
from prometheus_client.parser import text_string_to_metric_families

from helpers.exposition import exposition_problems, sample
from helpers.procs import poll
from helpers.pushes import STEPS

IGNORED_PREFIXES = ("go_", "process_", "pushgateway_", "python_", "flext_", "promhttp_")
PUSH_TIMES = ("push_time_seconds", "push_failure_time_seconds")


def series(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], str]:
    """Every pushed series of an exposition: (name, labels) -> value (push times as
    `set`/`zero`: when they were taken differs)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith(IGNORED_PREFIXES):
                continue
            value = s.value
            if s.name in PUSH_TIMES:
                shown = "zero" if value == 0 else "set"
            else:
                shown = "nan" if math.isnan(value) else repr(float(value))
            found[(s.name, frozenset(s.labels.items()))] = shown
    return found


def push(url: str, method: str, path: str, body: str) -> httpx.Response:
    return httpx.request(method, f"{url}/metrics/job{path}", content=body.encode(), timeout=10)


def scrape_until(url: str, predicate: Callable[[str], bool], timeout: float = 15) -> str:
    """`url`/metrics once `predicate` holds for it."""
    return poll(lambda: httpx.get(f"{url}/metrics").text, predicate, timeout, 0.1,
                "scrape condition")


def until_equal(read: Callable[[], Any], expected: Any, timeout: float = 10) -> Any:
    """What `read()` gives once it equals `expected`, or its last value at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_pushes_answered_and_exposed_as_the_pushgateway_does(pushgateway, daemon_factory):
    daemon = daemon_factory()
    differences = []
    for method, path, body in STEPS:
        oracle = push(pushgateway.url, method, path, body)
        ours = push(daemon.url, method, path, body)
        if oracle.status_code != ours.status_code:
            differences.append((method, path, oracle.status_code, ours.status_code, ours.text))
        # A refused push is refused with its reason in both.
        if ours.status_code == 400:
            assert ours.text.strip(), (method, path)
    assert differences == []

    expected = series(httpx.get(f"{pushgateway.url}/metrics").text)
    got = until_equal(lambda: series(httpx.get(f"{daemon.url}/metrics").text), expected)
    missing = {key: (value, got.get(key)) for key, value in expected.items()
               if got.get(key) != value}
    extra = {key: value for key, value in got.items() if key not in expected}
    assert (missing, extra) == ({}, {})
    # What the oracle shows: a sample of the comparison is not vacuous.
    assert expected[("d", frozenset({("job", "j4"), ("path", "/var/tmp"),
                                     ("instance", "")}))] == "1.0"
    assert expected[("push_failure_time_seconds", frozenset({("job", "j9"),
                                                             ("instance", "")}))] == "set"
    text = httpx.get(f"{daemon.url}/metrics").text
    assert exposition_problems(text) == []
    # The one listed difference (README): a counter whose TYPE line lacks `_total` is
    # exposed with `_total`, as every counter of this collector.
    assert 'c{instance="",job="j3",x="1"} 4' in httpx.get(f"{pushgateway.url}/metrics").text
    assert sample(text, "c_total", job="j3", x="1") == 4


def test_prometheus_client_push_functions_and_refusals(daemon_factory):
    daemon = daemon_factory()
    gateway = daemon.url.removeprefix("http://")
    registry = CollectorRegistry()
    Counter("jobs_done", "Jobs done.", ["kind"], registry=registry).labels("a").inc(3)
    Gauge("last_success_unixtime", "Last success.", registry=registry).set(1700000000)
    Histogram("duration_seconds", "Duration.", registry=registry, buckets=(1, 5)).observe(2)
    push_to_gateway(gateway, job="batch", registry=registry, grouping_key={"instance": "x"})
    extra = CollectorRegistry()
    Gauge("rows", "Rows.", registry=extra).set(42)
    pushadd_to_gateway(gateway, job="batch", registry=extra, grouping_key={"instance": "x"})

    text = scrape_until(daemon.url, lambda t: 'rows{instance="x"' in t)
    assert sample(text, "jobs_done_total", job="batch", instance="x", kind="a") == 3
    assert sample(text, "last_success_unixtime", job="batch", instance="x") == 1700000000
    assert sample(text, "duration_seconds_bucket", job="batch", instance="x", le="5.0") == 1
    assert sample(text, "push_time_seconds", job="batch", instance="x") > 1.7e9

    # A type clash with the pushed group: refused, counted, failure time recorded.
    clash = CollectorRegistry()
    Gauge("jobs_done_total", "A counter's name as a gauge.", registry=clash).set(1)
    with pytest.raises(OSError, match="400"):
        push_to_gateway(gateway, job="other", registry=clash)
    # The delimited protobuf format is refused with 415.
    answer = httpx.put(
        f"{daemon.url}/metrics/job/pb", content=b"\x00",
        headers={"Content-Type": "application/vnd.google.protobuf; "
                 "proto=io.prometheus.client.MetricFamily; encoding=delimited"},
    )
    assert answer.status_code == 415
    assert "text format" in answer.text
    assert push(daemon.url, "PUT", "/bad", "1x 1\n").status_code == 400
    # A native metric of a pushed name is refused, and a push of a native name.
    native = httpx.post(f"{daemon.url}/api/v1/metrics", json={
        "name": "rows", "type": "gauge", "value": 1, "service": "svc"})
    assert native.status_code == 422
    assert "pushed" in native.text
    assert httpx.post(f"{daemon.url}/api/v1/metrics", json={
        "name": "native_only", "type": "gauge", "value": 1, "service": "svc"}).status_code == 202
    scrape_until(daemon.url, lambda t: "native_only{" in t)
    refused = push(daemon.url, "PUT", "/n", "# TYPE native_only gauge\nnative_only 2\n")
    assert refused.status_code == 400
    assert "native_only" in refused.text

    delete_from_gateway(gateway, job="batch", grouping_key={"instance": "x"})
    text = scrape_until(daemon.url, lambda t: 'rows{instance="x"' not in t)
    assert sample(text, "jobs_done_total", job="batch") is None
    assert sample(text, "push_failure_time_seconds", job="other") > 1.7e9
    for reason in ("type_conflict", "unsupported_media_type", "malformed"):
        assert sample(text, "flext_collector_refused_items_total", signal="metrics",
                      reason=reason) >= 1, reason
    assert sample(text, "flext_collector_received_items_total", signal="metrics",
                  receiver="pushgateway") >= 5
    assert exposition_problems(text) == []


def test_groups_survive_a_restart_and_a_kill_9_then_expire(daemon_factory):
    daemon = daemon_factory()
    assert push(daemon.url, "PUT", "/kept/instance/a", "kept 1\n").status_code == 200
    daemon.restart()
    text = httpx.get(f"{daemon.url}/metrics").text
    assert sample(text, "kept", job="kept", instance="a") == 1
    assert sample(text, "push_time_seconds", job="kept", instance="a") > 1.7e9
    # Answered, then killed at once: the push is in the queue and applied after the start.
    assert push(daemon.url, "POST", "/kept/instance/a", "more 2\n").status_code == 200
    assert push(daemon.url, "DELETE", "/gone", "").status_code == 202
    daemon.kill9()
    daemon.start()
    text = scrape_until(daemon.url, lambda t: "more{" in t)
    assert sample(text, "kept", job="kept", instance="a") == 1
    assert sample(text, "more", job="kept", instance="a") == 2
    daemon.stop()
    # With push_group_ttl, a group without a push for that long goes, and stays gone.
    expiring = daemon_factory({"exporters": {"prometheus": {"push_group_ttl": "2s"}}},
                              data_dir=daemon.data_dir)
    scrape_until(expiring.url, lambda t: "kept{" not in t)
    assert push(expiring.url, "PUT", "/brief", "brief 1\n").status_code == 200
    scrape_until(expiring.url, lambda t: "brief{" in t)
    scrape_until(expiring.url, lambda t: "brief{" not in t and "push_time_seconds{" not in t)
    expiring.restart()
    assert "push_time_seconds{" not in httpx.get(f"{expiring.url}/metrics").text


def test_pushes_need_a_token_and_stay_in_their_tenant(daemon_factory):
    daemon = daemon_factory({"server": {"auth": {"tokens": [
        {"token": "alpha-token-0123456789", "tenant": "alpha"},
        {"token": "beta-token-0123456789", "tenant": "beta"},
    ]}}})
    alpha = {"Authorization": "Bearer alpha-token-0123456789"}
    beta = {"Authorization": "Bearer beta-token-0123456789"}
    url = f"{daemon.url}/metrics/job/common"
    assert httpx.put(url, content=b"up 1\n").status_code == 401
    assert httpx.delete(url).status_code == 401
    # The body's and the URL's tenant label are replaced by the token's.
    assert httpx.put(url + "/tenant/beta", content=b'up{tenant="beta"} 1\n',
                     headers=alpha).status_code == 200
    assert httpx.put(url, content=b"up 2\n", headers=beta).status_code == 200
    # beta deletes its own group only.
    assert httpx.delete(url, headers=beta).status_code == 202

    def text() -> str:
        return httpx.get(f"{daemon.url}/metrics").text

    shown = until_equal(lambda: sample(text(), "up", job="common", tenant="beta"), None)
    assert shown is None
    assert sample(text(), "up", job="common", tenant="alpha") == 1
    assert sample(text(), "flext_collector_refused_items_total", signal="metrics",
                  reason="unauthorized") == 2


def test_pushes_through_an_ingest_worker(daemon_factory):
    daemon = daemon_factory({"server": {"workers": 1, "max_body_bytes": 4096}})
    pushed = httpx.put(f"{daemon.url}/metrics/job/w/instance/i",
                       content=gzip.compress(b"# TYPE w gauge\nw 7\n"),
                       headers={"Content-Encoding": "gzip"})
    assert pushed.status_code == 200
    text = scrape_until(daemon.url, lambda t: "\nw{" in t)
    assert sample(text, "w", job="w", instance="i") == 7
    too_large = push(daemon.url, "PUT", "/w", "w 1\n" * 2000)
    assert too_large.status_code == 413
    assert push(daemon.url, "DELETE", "/w/instance/i", "").status_code == 202
    scrape_until(daemon.url, lambda t: "\nw{" not in t)
