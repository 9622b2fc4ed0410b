"""Hardening, second round: each class of attack against the real daemon, in one process
and with `server.workers: 2`. The rule every test asserts: no 5xx and no traceback,
`/healthz` answered within 1 s during the attack, RSS bounded, and what was answered 2xx
is there afterwards.

Classes: concatenated compression members; values past what the wire formats hold; huge
batches of bad items; paths a worker must route as one process does, and bodies of routes
that take none; health and alerts per tenant, and their limits; connections (idle, slow
or oversized heads, too many); slow bodies; a state file that cannot be written.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from signal import SIGTERM

import httpx
import orjson
import pytest

from helpers.exposition import total
from helpers.procs import DAEMON_COMMAND, Daemon, deep_merge, poll

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
JSON = {"Content-Type": "application/json"}
HEALTHZ_SECONDS = 1.0
MAX_SERVICES = 20
MAX_ALERTS = 20
MAX_CONNECTIONS = 200
HEADER_TIMEOUT = 2
BASE = {
    "server": {"max_body_bytes": 4 << 20, "header_timeout": HEADER_TIMEOUT,
               "max_connections": MAX_CONNECTIONS, "read_timeout": 20},
    "limits": {"max_concurrent_requests": 64, "max_slow_requests": 8,
               "slow_body_seconds": 1},
    "health": {"max_services": MAX_SERVICES},
    "exporters": {"alertmanager": {"max_alerts": MAX_ALERTS}},
    # spans are posted here with no span exporter: held in the queue
    "queue": {"hold_unexported": True},
}
MODES = {"one-process": {}, "workers": {"server": {"workers": 2}}}
TOKENS = {"team-a": "token-of-team-a", "team-b": "token-of-team-b"}


@pytest.fixture(scope="module", params=list(MODES))
def daemon(request, tmp_path_factory) -> Iterator[Daemon]:
    process = Daemon(tmp_path_factory.mktemp(f"hardening-{request.param}"),
                     config_overrides=deep_merge(BASE, MODES[request.param]))
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module", params=list(MODES))
def secured(request, tmp_path_factory) -> Iterator[Daemon]:
    auth = {"server": {"auth": {"tokens": [
        {"token": token, "tenant": tenant} for tenant, token in TOKENS.items()
    ]}}, "health": {"max_services": MAX_SERVICES},
        "exporters": {"alertmanager": {"max_alerts": MAX_ALERTS}}}
    process = Daemon(tmp_path_factory.mktemp(f"tenants-{request.param}"),
                     config_overrides=deep_merge(auth, MODES[request.param]))
    process.start()
    yield process
    process.stop()


# --- helpers -------------------------------------------------------------------------------


def processes(pid: int) -> list[int]:
    """The daemon and its ingest workers (its children)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [pid, *map(int, children.read().split())]
    except FileNotFoundError:
        return [pid]


def rss_mib(pid: int) -> float:
    """Resident set size of the daemon and its workers together."""
    size = 0
    for each in processes(pid):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{each}/status") as status:
            size += next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    return size / 1024


@contextlib.contextmanager
def attack(daemon: Daemon, max_growth_mib: float = 64) -> Iterator[None]:
    """Probe /healthz (a new connection each time) all along; afterwards it must have
    answered 200 within HEALTHZ_SECONDS every time, RSS must have grown less than
    `max_growth_mib`, and the log must hold no traceback."""
    before = rss_mib(daemon.pid)
    stop = threading.Event()
    late: list[str] = []
    probes = []

    def probe() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                status = httpx.get(f"{daemon.url}/healthz", timeout=5, trust_env=False).status_code
            except httpx.HTTPError as exc:
                status = repr(exc)
            took = time.monotonic() - started
            probes.append(took)
            if status != 200 or took > HEALTHZ_SECONDS:
                late.append(f"{status} after {took:.2f}s")
            stop.wait(0.1)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
    assert probes, "/healthz was never probed"
    assert not late, f"/healthz during the attack: {late}"
    growth = rss_mib(daemon.pid) - before
    assert growth < max_growth_mib, f"RSS grew {growth:.0f} MiB"
    assert daemon.running, daemon.log_tail()
    assert "Traceback" not in daemon.log_tail(100_000), daemon.log_tail()


def metric(name: str, **fields) -> dict:
    return {"name": name, "type": "gauge", "value": 1, "service": "hardening", **fields}


def post(daemon: Daemon, route: str, body: bytes, headers=None, token=None) -> httpx.Response:
    headers = {**JSON, **(headers or {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{daemon.url}{route}", content=body, headers=headers, timeout=30,
                      trust_env=False)


def scrape(daemon: Daemon) -> str:
    return httpx.get(f"{daemon.url}/metrics", timeout=10, trust_env=False).text


def wait_scraped(daemon: Daemon, present: str) -> str:
    return poll(lambda: scrape(daemon), lambda text: present in text, 10, 0.1,
                f"{present!r} on /metrics")


def refused(daemon: Daemon, signal: str, reason: str) -> float:
    return total(scrape(daemon), "flext_collector_refused_items_total", signal=signal,
                 reason=reason)


def wait_counted(daemon: Daemon, name: str, at_least: float, **labels: str) -> None:
    """Counts of workers reach the collector's /metrics a moment later: poll."""
    poll(lambda: total(scrape(daemon), name, **labels), lambda n: n >= at_least, 10, 0.1,
         f"{name}{labels} >= {at_least}")


# --- 3. compression ------------------------------------------------------------------------


def test_concatenated_members_are_linear_and_bounded(daemon):
    body = orjson.dumps(metric("members_ok"))
    empty = gzip.compress(b"")
    cases = [
        (empty * 10 + gzip.compress(body), "gzip", 202),
        (gzip.compress(body[:20]) + gzip.compress(body[20:]), "gzip", 202),
        (empty * 150_000 + gzip.compress(body), "gzip", 400),  # 3 MiB
        (empty * 1001, "gzip", 400),
        (zlib.compress(body) * 50_000, "deflate", 400),
        (zlib.compress(body) + b"junk", "deflate", 400),
        (gzip.compress(b"[" + b" " * (64 << 20) + b"]", 9), "gzip", 413),
        (gzip.compress(body)[:-3], "x-gzip", 400),
    ]
    with attack(daemon):
        for payload, encoding, status in cases:
            started = time.monotonic()
            answer = post(daemon, "/api/v1/metrics", payload, {"Content-Encoding": encoding})
            assert answer.status_code == status, (len(payload), encoding, answer.text[:300])
            assert time.monotonic() - started < 5
            if status == 400:
                assert answer.json()["errors"][0]["message"]
    assert "members_ok{" in wait_scraped(daemon, "members_ok{")


# --- 8. values past what the formats hold ----------------------------------------------------


NOW_NS = 1_700_000_000_000_000_000


def span(**fields) -> dict:
    return {"trace_id": TRACE, "span_id": "00f067aa0ba902b7", "name": "op",
            "service": "hardening", "start_time": NOW_NS, "end_time": NOW_NS + 1, **fields}


def raw_span(fields: bytes) -> bytes:
    """A span with `fields` as JSON text (orjson writes no integer past 64 bits)."""
    return orjson.dumps(span())[:-1] + b"," + fields + b"}"


def health(service: str, **fields) -> dict:
    return {"service": service, "status": "healthy", **fields}


@pytest.mark.parametrize(("route", "body", "status", "field"), [
    ("metrics", b'{"name":"a\xff","type":"counter","value":1,"service":"s"}', 400, ""),
    ("metrics", b'[{"name":"a","type":"counter","value":1,"service":"s\xc3"}]', 400, ""),
    ("metrics", b'{"name":"a","type":"counter","value":1,"service":"\xed\xa0\x80"}', 400, ""),
    ("spans", orjson.dumps(span(attributes={"x": 2**63})), 422, "attributes.x"),
    ("spans", raw_span(b'"attributes":{"x":%d}' % (-(2**63) - 1)), 422, "attributes.x"),
    ("spans", raw_span(b'"attributes":{"x":[1,%d]}' % 10**30), 422, "attributes.x"),
    ("spans", raw_span(b'"events":[{"name":"e","time":%d,"attributes":{"n":%d}}]'
                       % (NOW_NS, 2**64)), 422, "events.0.attributes.n"),
    ("health", b'{"service":"s","status":"healthy","checks":{"c":{"status":"healthy",'
               b'"observed_value":%d}}}' % 2**64, 422, "checks.c.observed_value"),
    ("health", b'{"service":"s","status":"healthy","checks":{"c":{"status":"healthy",'
               b'"observed_value":%d}}}' % -(10**40), 422, "checks.c.observed_value"),
])
def test_values_past_the_wire_formats_are_refused_with_their_field(daemon, route, body, status,
                                                                   field):
    answer = post(daemon, f"/api/v1/{route}", body)
    assert answer.status_code == status, answer.text[:500]
    errors = answer.json()["errors"]
    assert errors
    assert all(error["field"] == field for error in errors), errors
    assert "Traceback" not in daemon.log_tail(100_000)


def test_large_numbers_that_fit_are_accepted(daemon):
    assert post(daemon, "/api/v1/spans", orjson.dumps(span(
        attributes={"big": 2**63 - 1, "small": -(2**63), "float": 1.2e29, "list": [1, 2**62]},
    ))).status_code == 202
    assert post(daemon, "/api/v1/health", orjson.dumps(health("numbers", checks={
        "c": {"status": "healthy", "observed_value": 1.2e300}}))).status_code == 202


@pytest.mark.parametrize("accept", [
    "application/openmetrics-text; version=abc",
    "application/openmetrics-text; version=1.x; escaping=values",
    "text/plain; version=zz",
    "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text; version=",
    "*/*",
])
def test_metrics_answers_any_accept_header(daemon, accept):
    answer = httpx.get(f"{daemon.url}/metrics", headers={"Accept": accept}, timeout=10)
    assert answer.status_code == 200, answer.text[:300]
    assert "flext_collector_received_items_total" in answer.text
    if answer.headers["content-type"].startswith("application/openmetrics-text"):
        assert answer.text.endswith("# EOF\n")


# --- 11. a huge batch of bad items -----------------------------------------------------------


@pytest.mark.parametrize(("route", "item"), [
    ("metrics", {"name": "bad name!", "type": "nope", "value": "x", "service": "",
                 "labels": {"__a": "1"}, "extra": 1}),
    ("metrics", metric("label_values", labels={"long": "v" * 2049})),
    ("spans", {"trace_id": "0" * 32, "span_id": "zz", "name": "", "service": "",
               "start_time": -1, "end_time": "x"}),
    ("health", {"service": "", "status": "nope", "checks": {"c": {"status": "x"}}}),
    ("alerts", {"name": "", "service": "", "severity": "loud", "labels": {"alertname": "x"}}),
])
def test_a_batch_of_bad_items_lists_at_most_100_errors(daemon, route, item):
    body = orjson.dumps([item] * 1500)
    with attack(daemon):
        started = time.monotonic()
        answer = post(daemon, f"/api/v1/{route}", body)
        took = time.monotonic() - started
    assert answer.status_code == 422, answer.text[:300]
    document = answer.json()
    assert 1 <= len(document["errors"]) <= 100
    assert document["total_errors"] >= 100
    assert len(answer.content) < 64 * 1024
    assert took < 10
    # The first errors are those of the first items, in order.
    assert document["errors"][0]["index"] == 0


def test_a_few_bad_items_are_all_listed(daemon):
    items = [metric("few_ok")] * 50 + [metric("bad name!")] * 3
    answer = post(daemon, "/api/v1/metrics", orjson.dumps(items * 20))  # 1060 items
    document = answer.json()
    assert answer.status_code == 422
    assert "total_errors" not in document
    assert [e["index"] for e in document["errors"]] == [
        50 + 53 * batch + offset for batch in range(20) for offset in range(3)]


# --- 5 and 13. routes a worker passes on ----------------------------------------------------


@pytest.mark.parametrize(("path", "status"), [
    ("//api/v1/metrics", 404), ("/api//v1/metrics", 404), ("//v1/metrics", 404),
    ("/%2Fapi/v1/metrics", 404), ("/metrics", 405), ("/nothing", 404),
])
def test_paths_are_routed_as_in_one_process(daemon, path, status):
    body = orjson.dumps(metric("misrouted"))
    answer = post(daemon, path, body)
    assert answer.status_code == status, answer.text[:200]
    assert post(daemon, "/api/v1/metrics", orjson.dumps(metric("routed"))).status_code == 202
    assert "misrouted" not in wait_scraped(daemon, "routed{")


def test_a_body_sent_to_another_route_is_not_held(daemon):
    chunk = b"x" * (1 << 20)

    def body() -> Iterator[bytes]:
        for _ in range(200):  # 200 MiB
            yield chunk

    with attack(daemon, max_growth_mib=48):
        for path in ("/nothing", "/metrics", "/api/v1/health/"):
            try:
                answer = httpx.post(f"{daemon.url}{path}", content=body(), timeout=30)
            except httpx.TransportError:
                continue  # closed once answered: the rest was never read
            assert answer.status_code < 500


# --- 6 and 9. health and alerts: tenants, limits ---------------------------------------------


def as_tenant(daemon: Daemon, tenant: str, path: str) -> dict:
    answer = httpx.get(f"{daemon.url}{path}", timeout=10,
                       headers={"Authorization": f"Bearer {TOKENS[tenant]}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_health_and_alerts_are_per_tenant(secured):
    for tenant, status in (("team-a", "healthy"), ("team-b", "unhealthy")):
        answer = post(secured, "/api/v1/health", orjson.dumps(health("checkout", status=status)),
                      token=TOKENS[tenant])
        assert answer.status_code == 202, answer.text
    alert = {"name": "DiskFull", "service": "checkout", "labels": {"tenant": "spoofed"}}
    assert post(secured, "/api/v1/alerts", orjson.dumps(alert),
                token=TOKENS["team-a"]).status_code == 202

    def services(tenant: str) -> list[dict]:
        return as_tenant(secured, tenant, "/api/v1/health")["services"]

    mine = poll(lambda: services("team-a"), lambda s: len(s) == 1, 10, 0.1, "team-a health")
    assert (mine[0]["status"], mine[0]["tenant"]) == ("healthy", "team-a")
    theirs = poll(lambda: services("team-b"), lambda s: len(s) == 1, 10, 0.1, "team-b health")
    assert (theirs[0]["status"], theirs[0]["tenant"]) == ("unhealthy", "team-b")

    def alerts(tenant: str) -> list[dict]:
        return as_tenant(secured, tenant, "/api/v1/alerts")["alerts"]

    a_alerts = poll(lambda: alerts("team-a"), lambda a: len(a) == 1, 10, 0.1, "team-a alerts")
    assert a_alerts[0]["labels"]["alertname"] == "DiskFull"
    assert a_alerts[0]["labels"]["tenant"] == "team-a"
    b_alerts = poll(lambda: alerts("team-b"), lambda a: len(a) == 1, 10, 0.1, "team-b alerts")
    assert b_alerts[0]["labels"] == {"alertname": "ServiceUnhealthy", "severity": "critical",
                                     "service": "checkout", "tenant": "team-b"}

    text = scrape(secured)
    for tenant, status in (("team-a", "healthy"), ("team-b", "unhealthy")):
        assert total(text, "flext_service_health_status", service="checkout", tenant=tenant,
                     status=status) == 1
    assert httpx.get(f"{secured.url}/api/v1/health", timeout=10).status_code == 401


def test_health_services_are_limited(daemon):
    held = httpx.get(f"{daemon.url}/api/v1/health", timeout=10).json()["services"]
    reports = [health(f"limited-{i}") for i in range(MAX_SERVICES - len(held))]
    assert post(daemon, "/api/v1/health", orjson.dumps(reports)).status_code == 202
    before = refused(daemon, "health", "health_limit")
    answer = post(daemon, "/api/v1/health", orjson.dumps([health("limited-0"),
                                                          health("one-too-many")]))
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert [e["index"] for e in errors] == [1]
    assert "health.max_services=20" in errors[0]["message"]
    wait_counted(daemon, "flext_collector_refused_items_total", before + 2, signal="health",
                 reason="health_limit")
    # Services already held still report.
    assert post(daemon, "/api/v1/health", orjson.dumps(
        health("limited-3", status="degraded"))).status_code == 202
    held = poll(lambda: httpx.get(f"{daemon.url}/api/v1/health", timeout=10).json()["services"],
                lambda s: any(h["service"] == "limited-3" and h["status"] == "degraded"
                              for h in s), 10, 0.1, "limited-3 degraded")
    assert len(held) == MAX_SERVICES
    assert all(h["service"] != "one-too-many" for h in held)


def test_held_alerts_are_limited(daemon):
    """Every held alert counts (those derived from health too); new ones past the limit
    are refused."""
    accepted = []
    for index in range(MAX_ALERTS + 1):
        alert = {"name": "Full", "service": f"limited-{index}"}
        answer = post(daemon, "/api/v1/alerts", orjson.dumps(alert))
        if answer.status_code != 202:
            break
        accepted.append(alert)
    assert answer.status_code == 422, answer.text
    assert "exporters.alertmanager.max_alerts=20" in answer.json()["errors"][0]["message"]
    assert 0 < len(accepted) <= MAX_ALERTS
    wait_counted(daemon, "flext_collector_refused_items_total", 1, signal="alerts",
                 reason="alert_limit")
    # An alert already held still changes.
    assert post(daemon, "/api/v1/alerts", orjson.dumps(
        {**accepted[0], "status": "resolved"})).status_code == 202

    def full() -> set[str]:
        alerts = httpx.get(f"{daemon.url}/api/v1/alerts", timeout=10).json()["alerts"]
        return {a["labels"]["service"] for a in alerts if a["labels"]["alertname"] == "Full"}

    poll(full, lambda services: services == {a["service"] for a in accepted[1:]}, 10, 0.1,
         "every accepted alert held, the first resolved")


def test_health_and_alert_limits_are_per_tenant(secured):
    """team-a at its limits (services, alerts): its new ones are refused, team-b's are
    accepted, and team-a's held ones still change."""
    a, b = TOKENS["team-a"], TOKENS["team-b"]
    services = [health(f"filled-{i}") for i in range(MAX_SERVICES)]
    alerts = [{"name": "Full", "service": f"filled-{i}"} for i in range(MAX_ALERTS)]
    assert post(secured, "/api/v1/health", orjson.dumps(services[: MAX_SERVICES // 2]),
                token=a).status_code == 202
    assert post(secured, "/api/v1/alerts", orjson.dumps(alerts[: MAX_ALERTS // 2]),
                token=a).status_code == 202
    # team-a's batches are refused as soon as it holds its limit (what it held before counts).
    for route, items, field in (("/api/v1/health", services, "service"),
                                ("/api/v1/alerts", alerts, "labels")):
        for index in range(len(items)):
            answer = post(secured, route, orjson.dumps(items[index]), token=a)
            if answer.status_code != 202:
                break
        assert answer.status_code == 422, answer.text
        error = answer.json()["errors"][0]
        assert error["field"] == field
        assert "of this tenant are held" in error["message"]
        assert "allows per tenant" in error["message"]
        assert post(secured, route, orjson.dumps(items[-1]), token=a).status_code == 422
    for signal, reason in (("health", "health_limit"), ("alerts", "alert_limit")):
        wait_counted(secured, "flext_collector_refused_items_total", 2, signal=signal,
                     reason=reason)
    # team-b is not kept out, with the very same names.
    for route, items in (("/api/v1/health", services), ("/api/v1/alerts", alerts)):
        answer = post(secured, route, orjson.dumps(items[-1]), token=b)
        assert answer.status_code == 202, answer.text
    poll(lambda: as_tenant(secured, "team-b", "/api/v1/alerts")["alerts"],
         lambda held: any(x["labels"]["service"] == alerts[-1]["service"] for x in held),
         10, 0.1, "team-b's alert held")
    # team-a's held services and alerts still change.
    assert post(secured, "/api/v1/health", orjson.dumps(health("filled-0", status="degraded")),
                token=a).status_code == 202
    assert post(secured, "/api/v1/alerts", orjson.dumps({**alerts[0], "status": "resolved"}),
                token=a).status_code == 202


# --- 4. connections --------------------------------------------------------------------------


def open_fds(pid: int) -> int:
    return max(len(os.listdir(f"/proc/{each}/fd")) for each in processes(pid))


def test_idle_connections_are_bounded_and_closed(daemon):
    port = int(daemon.url.rsplit(":", 1)[1])
    sockets: list[socket.socket] = []
    with attack(daemon):
        try:
            # more than all processes' bounds together
            sockets.extend(socket.create_connection(("127.0.0.1", port))
                           for _ in range(MAX_CONNECTIONS * 3))
            partial = socket.create_connection(("127.0.0.1", port))
            partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            sockets.append(partial)
            time.sleep(0.5)
            assert open_fds(daemon.pid) < MAX_CONNECTIONS + 128
            time.sleep(HEADER_TIMEOUT + 1)
            answers = []
            for sock in sockets:
                sock.settimeout(2)
                try:
                    answers.append(sock.recv(64))
                except ConnectionResetError:
                    answers.append(b"")  # evicted
            # Those that sent nothing are closed without an answer, a partial head gets 408.
            assert answers[-1].startswith(b"HTTP/1.1 408"), answers[-1]
            assert set(answers[:-1]) == {b""}
        finally:
            for sock in sockets:
                sock.close()
    wait_counted(daemon, "flext_collector_refused_connections_total", 1,
                 reason="max_connections")
    wait_counted(daemon, "flext_collector_refused_connections_total", 1,
                 reason="header_timeout")


def _answer(sock: socket.socket) -> bytes:
    """One HTTP answer read from `sock` (its head and its content-length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_a_stopping_daemon_answers_the_next_request_of_an_idle_connection(daemon_factory):
    """SIGTERM (as an ingest worker replaced by a reload gets) while a client holds a
    keep-alive connection between two requests: the listener closes, and the request the
    client sends next on its connection is answered (with `Connection: close`), not cut."""
    daemon = daemon_factory()
    port = int(daemon.url.rsplit(":", 1)[1])
    item = orjson.dumps({"name": "drain_probe", "type": "gauge", "value": 1, "service": "p"})
    request = (b"POST /api/v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
               b"\r\nContent-Length: %d\r\n\r\n%s" % (len(item), item))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        sock.sendall(request)
        assert _answer(sock).startswith(b"HTTP/1.1 202")
        os.kill(daemon.pid, SIGTERM)
        poll(lambda: _refused(port), bool, 10, 0.01, "the listener closed")
        sock.sendall(request)
        answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 202"), answer
        assert b"connection: close" in answer.lower()
        assert sock.recv(1) == b""  # then closed
    poll(lambda: daemon.returncode, lambda code: code is not None, 30, 0.1, "stopped")
    assert daemon.returncode == 0, daemon.log_tail()


def test_oversized_heads_are_refused_without_holding_them(daemon):
    port = int(daemon.url.rsplit(":", 1)[1])
    sockets = []
    with attack(daemon):
        try:
            for _ in range(60):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: ")
                sockets.append(sock)
            for sock in sockets:
                with contextlib.suppress(OSError):
                    for _ in range(16):  # 4 MiB each, unless closed first
                        sock.sendall(b"a" * (256 << 10))
            answers = []
            for sock in sockets:
                sock.settimeout(2)
                try:
                    answers.append(sock.recv(64))
                except OSError:
                    answers.append(b"reset")
            assert all(a.startswith(b"HTTP/1.1 431") or a in (b"", b"reset") for a in answers)
        finally:
            for sock in sockets:
                sock.close()
        many = socket.create_connection(("127.0.0.1", port))
        many.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                     + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n")
        many.settimeout(5)
        assert many.recv(64).startswith(b"HTTP/1.1 431")
        many.close()
    wait_counted(daemon, "flext_collector_refused_connections_total", 1,
                 reason="header_too_large")
    wait_counted(daemon, "flext_collector_refused_connections_total", 1,
                 reason="too_many_headers")


# --- 16. slow bodies -------------------------------------------------------------------------


def test_slow_bodies_do_not_hold_every_slot(daemon):
    port = int(daemon.url.rsplit(":", 1)[1])
    sockets = []
    body = orjson.dumps(metric("served_while_slow"))
    with attack(daemon):
        try:
            for _ in range(160):  # past every process's max_concurrent_requests (64)
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"POST /api/v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: "
                             b"application/json\r\nContent-Length: 1000\r\n\r\n{")
                sockets.append(sock)
            started = time.monotonic()
            answer = poll(lambda: post(daemon, "/api/v1/metrics", body),
                          lambda a: a.status_code == 202, 8, 0.2, "a request served")
            assert answer.status_code == 202
            assert time.monotonic() - started < 8  # not server.read_timeout (20 s)
            # Past the slow-body slots, the slow senders are refused (while still sending).
            wait_counted(daemon, "flext_collector_refused_items_total", 1, signal="metrics",
                         reason="slow_body")
        finally:
            for sock in sockets:
                sock.close()
    wait_scraped(daemon, "served_while_slow{")


# --- 4. open files ---------------------------------------------------------------------------


def test_the_open_files_limit_is_raised_to_the_hard_one(tmp_path):
    """Started with a soft limit of 300 descriptors (hard 2048), the daemon raises it, and
    idle sockets past the old soft limit cannot make it run out."""
    command = ("prlimit", "--nofile=300:2048", *DAEMON_COMMAND)
    process = Daemon(tmp_path, command=command)
    process.start()
    try:
        with open(f"/proc/{process.pid}/limits") as limits:
            line = next(line for line in limits if line.startswith("Max open files"))
        assert line.split()[3:5] == ["2048", "2048"]
        port = int(process.url.rsplit(":", 1)[1])
        sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(400)]
        try:
            assert post(process, "/api/v1/health", orjson.dumps(health("fds"))).status_code == 202
        finally:
            for sock in sockets:
                sock.close()
        assert "Too many open files" not in process.log_tail(10_000)
    finally:
        process.stop()
