"""The native API against the real daemon: every documented answer, and nothing kept on refusal."""

import httpx
import orjson
import pytest

from helpers.exposition import sample

NOW = 1_700_000_000_000_000_000
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def metric(name, **fields):
    return {"name": name, "type": "counter", "value": 1, "service": "svc", **fields}


def span(**fields):
    return {"trace_id": TRACE, "span_id": SPAN, "name": "GET /", "service": "svc",
            "start_time": NOW, "end_time": NOW + 1000, **fields}


def nested(depth):
    return b'{"name":"deep","type":"gauge","value":1,"service":"s","labels":' + (
        b"[" * depth) + (b"]" * depth) + b"}"


BAD = [
    # (id, route, body, content type, status, field, words in the message)
    ("malformed_json", "metrics", b'{"name": "x", ', "application/json", 400, "", "JSON"),
    ("not_json_at_all", "metrics", b"hello", "application/json", 400, "", "JSON"),
    ("empty_body", "metrics", b"", "application/json", 400, "", "empty"),
    ("wrong_type_value", "metrics", metric("c_wrong_type", value="abc"), None, 422, "value",
     "number"),
    ("missing_service", "metrics", {"name": "c_missing", "type": "gauge", "value": 1}, None,
     422, "service", "required"),
    ("unknown_field", "metrics", metric("c_unknown", lables={"a": "b"}), None, 422, "lables",
     "not a known field"),
    ("nan", "metrics", b'{"name":"c_nan","type":"gauge","value":NaN,"service":"s"}', None,
     422, "value", "finite"),
    ("infinity", "metrics", b'{"name":"c_inf","type":"gauge","value":1e999,"service":"s"}',
     None, 422, "value", "finite"),
    ("negative_counter", "metrics", metric("c_negative", value=-1), None, 422, "value", ">= 0"),
    ("bad_metric_name", "metrics", metric("9lives"), None, 422, "name", "match"),
    ("bad_label_name", "metrics", metric("c_bad_label", labels={"bad-label": "x"}), None, 422,
     "labels.bad-label", "match"),
    ("reserved_label_prefix", "metrics", metric("c_dunder", labels={"__x": "y"}), None, 422,
     "labels.__x", "match"),
    ("label_job_reserved", "metrics", metric("c_job", labels={"job": "y"}), None, 422,
     "labels.job", "reserved"),
    ("unknown_type", "metrics", metric("c_kind", type="summary"), None, 422, "type", "counter"),
    ("span_end_before_start", "spans", span(end_time=NOW - 1), None, 422, "end_time", "before"),
    ("zero_trace_id", "spans", span(trace_id="0" * 32), None, 422, "trace_id", "zero"),
    ("zero_span_id", "spans", span(span_id="0" * 16), None, 422, "span_id", "zero"),
    ("short_trace_id", "spans", span(trace_id="abc"), None, 422, "trace_id", "match"),
    ("bad_time", "spans", span(start_time="yesterday"), None, 422, "start_time", "RFC 3339"),
    ("bad_alert_severity", "alerts", {"name": "A", "service": "s", "severity": "meh"}, None, 422,
     "severity", "critical"),
    ("bad_health_status", "health", {"service": "s", "status": "fine"}, None, 422, "status",
     "healthy"),
    ("wrong_content_type", "metrics", metric("c_ctype"), "text/plain", 415, "", "Content-Type"),
    ("empty_array", "metrics", [], None, 422, "", "empty"),
    ("scalar_top_level", "metrics", b"42", None, 400, "", "object or array"),
    ("array_of_scalars", "metrics", [1, 2], None, 422, "", "object"),
    ("deeply_nested", "metrics", nested(100_000), None, 400, "", "JSON"),
    ("too_many_items", "metrics", [metric("c_many")] * 10_001, None, 413, "",
     "max_items_per_request"),
]


def encode(body):
    return body if isinstance(body, bytes) else orjson.dumps(body)


# Every answer is the same from one process and through ingest workers (server.workers).
MODES = pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "2-workers"])


@pytest.fixture(scope="module", params=[0, 2], ids=["one-process", "2-workers"])
def daemon(tmp_path_factory, request):
    from helpers.procs import Daemon

    process = Daemon(tmp_path_factory.mktemp("native"), config_overrides={
        "server": {"max_body_bytes": 2_000_000, "workers": request.param},
        # Spans are held (no span exporter here), not refused.
        "queue": {"hold_unexported": True}})
    process.start()
    yield process
    process.stop()


def scrape(daemon):
    return httpx.get(f"{daemon.url}/metrics", timeout=10).text


@pytest.mark.parametrize(("case", "route", "body", "ctype", "status", "field", "words"), BAD,
                         ids=[b[0] for b in BAD])
def test_bad_input_gets_documented_answer(daemon, case, route, body, ctype, status, field,
                                          words):
    before = scrape(daemon)
    answer = httpx.post(f"{daemon.url}/api/v1/{route}", content=encode(body),
                        headers={"Content-Type": ctype or "application/json"}, timeout=30)
    assert answer.status_code == status, answer.text
    errors = answer.json()["errors"]
    assert errors, answer.text
    assert any(e["field"] == field and words.lower() in e["message"].lower() for e in errors), (
        errors[:3])
    assert httpx.get(f"{daemon.url}/healthz", timeout=5).status_code == 200
    after = scrape(daemon)
    for signal in ("metrics", "spans", "alerts", "health"):
        assert sample(after, "flext_collector_queue_items", signal=signal) == sample(
            before, "flext_collector_queue_items", signal=signal)
        assert sample(after, "flext_collector_received_items_total", signal=signal) == sample(
            before, "flext_collector_received_items_total", signal=signal)
    assert f"c_{case}" not in after


def test_oversized_body_is_413_and_counted(daemon):
    body = orjson.dumps([metric("c_oversized", labels={"pad": "x" * 1000})] * 3000)
    assert len(body) > 2_000_000
    answer = httpx.post(f"{daemon.url}/api/v1/metrics", content=body,
                        headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 413
    assert "larger than 2000000 bytes" in answer.json()["errors"][0]["message"]
    poll_until(lambda: (sample(scrape(daemon), "flext_collector_refused_items_total",
                               signal="metrics", reason="too_large") or 0) >= 1)


def test_batch_errors_list_every_bad_item_and_keep_nothing(daemon):
    batch = [metric("c_batch_ok"), metric("c_batch_bad", value=-5), metric("c_batch_ok"),
             metric("bad name")]
    answer = httpx.post(f"{daemon.url}/api/v1/metrics", json=batch, timeout=10)
    assert answer.status_code == 422
    assert {(e["index"], e["field"]) for e in answer.json()["errors"]} == {(1, "value"),
                                                                           (3, "name")}
    assert "c_batch_ok" not in scrape(daemon)


def test_a_10000_item_batch_is_accepted(daemon):
    batch = [metric("c_big_batch", labels={"n": str(i % 100)}) for i in range(10_000)]
    answer = httpx.post(f"{daemon.url}/api/v1/metrics", json=batch, timeout=30)
    assert answer.status_code == 202
    assert answer.json() == {"accepted": 10_000}


@pytest.mark.parametrize(("route", "body"), [
    ("metrics", metric("c_good", labels={"http.method": "GET"})),
    ("spans", [span(), span(span_id="00f067aa0ba902b8", parent_span_id=SPAN,
                         start_time="2026-11-27T10:00:00Z", end_time="2026-11-27T10:00:01.5Z",
                         attributes={"http.status_code": 200, "tags": ["a", "b"]},
                         events=[{"name": "retry", "time": NOW}])]),
    ("alerts", {"name": "DiskFull", "service": "db", "severity": "critical",
                "summary": "disk is full"}),
    ("health", {"service": "db", "status": "healthy",
                "checks": {"disk": {"status": "healthy", "observed_value": 0.4}}}),
])
def test_valid_items_are_accepted(daemon, route, body):
    answer = httpx.post(f"{daemon.url}/api/v1/{route}", json=body,
                        headers={"Content-Type": "application/json; charset=utf-8"}, timeout=10)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": len(body) if isinstance(body, list) else 1}


@MODES
def test_series_limit_refuses_new_series_with_the_metric_named(tmp_path, workers):
    from helpers.procs import Daemon

    daemon = Daemon(tmp_path, config_overrides={
        "server": {"workers": workers},
        "exporters": {"prometheus": {"max_series_per_metric": 5}}}).start()
    try:
        first = [metric("limited", labels={"n": str(i)}) for i in range(5)]
        assert httpx.post(f"{daemon.url}/api/v1/metrics", json=first).status_code == 202
        poll_until(lambda: sample(scrape(daemon), "limited_total", n="4") == 1.0)
        answer = httpx.post(f"{daemon.url}/api/v1/metrics",
                            json=[metric("limited", labels={"n": "new"})])
        assert answer.status_code == 422
        assert "limited" in answer.json()["errors"][0]["message"]
        assert "max_series_per_metric" in answer.json()["errors"][0]["message"]
        again = httpx.post(f"{daemon.url}/api/v1/metrics", json=first)
        assert again.status_code == 202
        brand_new = [metric("limited_at_once", labels={"n": str(i)}) for i in range(6)]
        answer = httpx.post(f"{daemon.url}/api/v1/metrics", json=brand_new)
        assert answer.status_code == 422
        assert "limited_at_once" in answer.json()["errors"][0]["message"]
    finally:
        daemon.stop()


def test_type_conflict_is_refused(daemon):
    assert httpx.post(f"{daemon.url}/api/v1/metrics",
                      json=metric("conflicted", type="gauge")).status_code == 202
    poll_until(lambda: sample(scrape(daemon), "conflicted") == 1.0)
    answer = httpx.post(f"{daemon.url}/api/v1/metrics", json=metric("conflicted"))
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "type"


def test_readyz_and_docs(daemon):
    ready = httpx.get(f"{daemon.url}/readyz")
    assert ready.status_code == 200
    assert "prometheus" in ready.json()["exporters"]
    schema = httpx.get(f"{daemon.url}/openapi.json").json()
    assert "/api/v1/metrics" in schema["paths"]
    assert "Metric" in schema["components"]["schemas"]
    assert httpx.get(f"{daemon.url}/docs").status_code == 200


def poll_until(check, timeout=10.0):
    from helpers.procs import poll

    poll(check, bool, timeout, 0.05, "condition")
