"""The refusal inspector (`GET /api/v1/refusals`, `flext-observability refusals`) against
the real daemon: every kind of refused request is listed with its reason and field, the
ring stays bounded, and a tenant sees its own refusals only."""

import secrets
import subprocess
import sys

import grpc
import httpx
import orjson
import pytest

from helpers.otlp_requests import traces_request
from helpers.procs import REPO_ROOT, Daemon, poll

integration = pytest.mark.integration

TOKEN_A = f"tok-a-{secrets.token_hex(8)}"
TOKEN_B = f"tok-b-{secrets.token_hex(8)}"
WRONG = f"tok-wrong-{secrets.token_hex(8)}"
MAX_BODY = 4096
NOW_NS = 1_700_000_000_000_000_000


def bearer(token, content_type="application/json"):
    return {"Authorization": f"Bearer {token}", "Content-Type": content_type}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("refusals"), config_overrides={"server": {
        "max_body_bytes": MAX_BODY,
        "auth": {"tokens": [{"token": TOKEN_A, "tenant": "team-a"},
                            {"token": TOKEN_B, "tenant": "team-b"}],
                 "protect_metrics": True},
    }, "queue": {"hold_unexported": True}})
    daemon.start()
    yield daemon
    daemon.stop()


def refusals(daemon, token, **params):
    answer = httpx.get(f"{daemon.url}/api/v1/refusals", params=params,
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["refusals"]


def newest(daemon, token=TOKEN_A, **params):
    found = refusals(daemon, token, limit=1, **params)
    assert found, "no refusal listed"
    return found[0]


def post(daemon, path, body, headers):
    return httpx.post(f"{daemon.url}{path}", content=body, headers=headers, timeout=10)


# (what is posted, status, reason, first error's field or None, a word of its message)
NATIVE_CASES = {
    "bad_body": ("/api/v1/metrics", b"not json at all", "application/json",
                 400, "malformed", "", "JSON"),
    "too_large": ("/api/v1/metrics", b"[" + b" " * MAX_BODY + b"]", "application/json",
                  413, "too_large", "", "server.max_body_bytes"),
    "media_type": ("/api/v1/metrics", b"{}", "text/plain",
                   415, "unsupported_media_type", "", "application/json"),
}


@integration
@pytest.mark.parametrize("case", sorted(NATIVE_CASES))
def test_native_refusals_are_listed_with_status_reason_and_message(daemon, case):
    path, body, ctype, status, reason, field, word = NATIVE_CASES[case]
    answer = post(daemon, path, body, bearer(TOKEN_A, ctype))
    assert answer.status_code == status, answer.text
    refusal = newest(daemon)
    assert (refusal["status"], refusal["reason"], refusal["receiver"], refusal["signal"],
            refusal["tenant"]) == (status, reason, "native", "metrics", "team-a")
    assert refusal["errors"][0]["field"] == field
    assert word in refusal["errors"][0]["message"]
    assert refusal["time"].endswith("Z")


@integration
def test_validation_errors_name_index_and_field_and_keep_no_payload(daemon):
    secret_value = f"payload-{secrets.token_hex(6)}"
    items = [
        {"name": "ok_total", "type": "counter", "value": 1, "service": "svc",
         "labels": {"note": secret_value}},
        {"type": "counter", "value": 1, "service": "svc", "labels": {"note": secret_value}},
        {"name": "bad", "type": "counter", "value": "x", "service": "svc"},
    ]
    answer = post(daemon, "/api/v1/metrics", orjson.dumps(items), bearer(TOKEN_A))
    assert answer.status_code == 422, answer.text
    refusal = newest(daemon)
    assert (refusal["status"], refusal["reason"], refusal["items"]) == (422, "invalid", 3)
    where = {(e["index"], e["field"]) for e in refusal["errors"]}
    assert {(1, "name"), (2, "value")} <= where, refusal["errors"]
    listing = httpx.get(f"{daemon.url}/api/v1/refusals",
                        headers={"Authorization": f"Bearer {TOKEN_A}"}).text
    assert secret_value not in listing
    assert TOKEN_A not in listing


@integration
def test_unauthorized_requests_are_listed_without_tenant_nor_token(daemon):
    answer = post(daemon, "/api/v1/health", b"{}", bearer(WRONG))
    assert answer.status_code == 401
    refusal = newest(daemon, reason="unauthorized")
    assert (refusal["status"], refusal["signal"], refusal["tenant"]) == (401, "health", None)
    listing = httpx.get(f"{daemon.url}/api/v1/refusals",
                        headers={"Authorization": f"Bearer {TOKEN_B}"}).text
    assert WRONG not in listing


@integration
def test_otlp_partial_success_and_errors_are_listed(daemon):
    good, bad = bytes(range(1, 17)), bytes(16)
    body = traces_request(good, bad, bad).SerializeToString()
    answer = post(daemon, "/v1/traces", body, bearer(TOKEN_A, "application/x-protobuf"))
    assert answer.status_code == 200
    refusal = newest(daemon, signal="spans")
    assert (refusal["status"], refusal["reason"], refusal["items"], refusal["receiver"]) == (
        200, "invalid", 2, "otlp_http")
    assert "traceId" in refusal["errors"][0]["message"]
    answer = post(daemon, "/v1/metrics", b"\xff\xff\xff", bearer(TOKEN_A,
                                                                  "application/x-protobuf"))
    assert answer.status_code == 400
    refusal = newest(daemon, signal="metrics")
    assert (refusal["status"], refusal["reason"], refusal["receiver"]) == (
        400, "malformed", "otlp_http")
    assert refusal["errors"][0]["message"]


@integration
def test_a_tenant_sees_only_its_own_refusals(daemon):
    item = {"type": "counter", "value": 1, "service": "team-b-service"}
    assert post(daemon, "/api/v1/metrics", orjson.dumps(item), bearer(TOKEN_B)).status_code == 422
    mine = newest(daemon, TOKEN_B)
    assert (mine["tenant"], mine["reason"]) == ("team-b", "invalid")
    seen_by_a = refusals(daemon, TOKEN_A, limit=1000)
    assert seen_by_a
    assert all(r["tenant"] in ("team-a", None) for r in seen_by_a)
    assert refusals(daemon, TOKEN_A, tenant="team-b") == []


@integration
def test_query_filters_and_bad_parameters(daemon):
    for reason in ("malformed", "invalid"):
        assert all(reason in r["reasons"] for r in refusals(daemon, TOKEN_A, reason=reason))
    assert all(r["signal"] == "spans" for r in refusals(daemon, TOKEN_A, signal="spans"))
    times = [r["time"] for r in refusals(daemon, TOKEN_A)]
    assert times == sorted(times, reverse=True)
    for params, field in (({"limit": "x"}, "limit"), ({"limit": "0"}, "limit"),
                          ({"signal": "nope"}, "signal"), ({"other": "1"}, "other")):
        answer = httpx.get(f"{daemon.url}/api/v1/refusals", params=params,
                           headers={"Authorization": f"Bearer {TOKEN_A}"})
        assert answer.status_code == 400
        assert answer.json()["errors"][0]["field"] == field
    assert httpx.get(f"{daemon.url}/api/v1/refusals").status_code == 401


@integration
def test_cli_lists_the_refusals(daemon):
    post(daemon, "/api/v1/alerts", b"[]", bearer(TOKEN_A))
    command = [sys.executable, "-m", "flext_observability", "refusals", "--endpoint",
               daemon.url, "--token", TOKEN_A, "--limit", "1"]
    env = {"PYTHONPATH": str(REPO_ROOT / "src")}
    text = subprocess.run(command, capture_output=True, text=True, check=True, env=env,
                          timeout=30).stdout
    assert "422 native alerts invalid items=0 tenant=team-a" in text, text
    assert "the batch is empty" in text
    listed = subprocess.run([*command, "--json"], capture_output=True, text=True, check=True,
                            env=env, timeout=30).stdout
    assert orjson.loads(listed)[0]["reason"] == "invalid"


@integration
def test_the_ring_is_bounded_and_queue_full_is_listed(tmp_path):
    """Two held spans fill the spans' share of the queue; each later span is 429, and only
    the last 20 refusals stay."""
    daemon = Daemon(tmp_path, config_overrides={
        "server": {"refusals_kept": 20},
        "queue": {"kind": "memory", "max_items": 4, "hold_unexported": True},
    }).start()
    try:
        span = {"trace_id": "0af7651916cd43dd8448eb211c80319c",
                "span_id": "b7ad6b7169203331", "name": "op", "service": "svc",
                "start_time": NOW_NS, "end_time": NOW_NS + 1}
        spans = [{**span, "span_id": f"b7ad6b716920333{i}"} for i in range(2)]
        headers = {"Content-Type": "application/json"}
        assert post(daemon, "/api/v1/spans", orjson.dumps(spans), headers).status_code == 202
        with httpx.Client(timeout=10) as client:
            for _ in range(60):
                answer = client.post(f"{daemon.url}/api/v1/spans", content=orjson.dumps(span),
                                     headers=headers)
                assert answer.status_code == 429
        listed = httpx.get(f"{daemon.url}/api/v1/refusals", params={"limit": 1000}).json()
        assert len(listed["refusals"]) == 20
        assert listed["kept"] == 20
        assert {(r["status"], r["reason"], r["tenant"]) for r in listed["refusals"]} == {
            (429, "queue_full", None)}
        assert "queue" in listed["refusals"][0]["errors"][0]["message"]
    finally:
        daemon.stop()


@integration
def test_refusals_made_in_an_ingest_worker_are_listed(tmp_path):
    daemon = Daemon(tmp_path, config_overrides={"server": {"workers": 1}}).start()
    try:
        item = {"name": "x", "type": "counter", "value": -1, "service": "svc"}
        answer = post(daemon, "/api/v1/metrics", orjson.dumps(item),
                      {"Content-Type": "application/json"})
        assert answer.status_code == 422, answer.text

        found = poll(lambda: httpx.get(f"{daemon.url}/api/v1/refusals").json()["refusals"],
                     bool, 10, 0.1, "the worker's refusal listed")
        refusal = found[0]
        assert (refusal["status"], refusal["reason"], refusal["errors"][0]["field"]) == (
            422, "invalid", "value")
    finally:
        daemon.stop()


@integration
def test_the_status_page_is_protected_like_metrics(daemon):
    pages = {}
    for path in ("/", "/metrics"):
        assert httpx.get(f"{daemon.url}{path}").status_code == 401
        pages[path] = httpx.get(f"{daemon.url}{path}",
                                headers={"Authorization": f"Bearer {TOKEN_B}"})
        assert pages[path].status_code == 200
    assert "Recent refusals" in pages["/"].text
    assert "flext_collector_http_requests_total" in pages["/metrics"].text


@integration
def test_grpc_refusals_are_listed_with_their_grpc_code(daemon):
    good, bad = bytes(range(1, 17)), bytes(16)
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        export(traces_request(good, bad).SerializeToString(),
               metadata=(("authorization", f"Bearer {TOKEN_A}"),), timeout=10)
        refusal = newest(daemon, signal="spans")
        assert (refusal["receiver"], refusal["status"], refusal["reason"], refusal["items"],
                refusal["tenant"]) == ("otlp_grpc", 0, "invalid", 1, "team-a")
        assert "traceId" in refusal["errors"][0]["message"]
        with pytest.raises(grpc.RpcError) as refused:
            export(b"", metadata=(("authorization", f"Bearer {WRONG}"),), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # gRPC sends an abort's status before the handler's exception reaches the recorder:
        # the refusal is listed a moment after the caller has its answer.
        refusal = poll(lambda: newest(daemon, reason="unauthorized"),
                       lambda found: found["receiver"] == "otlp_grpc", 10, 0.05,
                       "the gRPC refusal listed")
        assert (refusal["status"], refusal["tenant"]) == (
            grpc.StatusCode.UNAUTHENTICATED.value[0], None)
