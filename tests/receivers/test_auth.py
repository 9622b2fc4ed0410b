"""Bearer-token authentication, tenants and CORS against the real daemon.

One daemon holds three tokens: a plain one (tenant `default`), one for `team-a` in the
config, and one for `team-b` in a tokens file; its log is at debug level so that the
last test can show no token ever reached it.
"""

import secrets
import sqlite3
import subprocess
import sys

import grpc
import httpx
import orjson
import pytest
import yaml
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry

from flext_observability.pipeline.queue import MemoryQueue
from flext_observability.receivers.auth import Authenticator, bearer_token
from flext_observability.receivers.config import AuthConfig
from flext_observability.telemetry import SelfTelemetry
from helpers.exposition import total
from helpers.otlp_json import otlp_json
from helpers.procs import DAEMON_COMMAND, REPO_ROOT, Daemon, poll

integration = pytest.mark.integration

TOKEN = f"tok-default-{secrets.token_hex(8)}"
TOKEN_A = f"tok-team-a-{secrets.token_hex(8)}"
TOKEN_B = f"tok-team-b-{secrets.token_hex(8)}"
WRONG = f"tok-wrong-{secrets.token_hex(8)}"
ORIGIN = "https://app.example.com"
TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
NOW = 1_700_000_000_000_000_000
NATIVE_401 = {"errors": [{"index": None, "field": "",
                          "message": "missing or invalid bearer token"}]}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("auth")
    tokens_file = work_dir / "tokens"
    tokens_file.write_text(f"# tenant:token per line\n\nteam-b:{TOKEN_B}\n")
    daemon = Daemon(
        work_dir,
        config_overrides={"server": {
            "auth": {"tokens": [TOKEN, {"token": TOKEN_A, "tenant": "team-a"}],
                     "tokens_file": str(tokens_file)},
            "cors": {"allowed_origins": [ORIGIN], "allowed_headers": ["X-Request-Id"]},
        }, "queue": {"hold_unexported": True}},
        command=(*DAEMON_COMMAND, "--log-level", "debug"),
    )
    daemon.start()
    yield daemon
    daemon.stop()


def scrape(daemon, headers=None):
    return httpx.get(f"{daemon.url}/metrics", headers=headers, timeout=10).text


SIGNALS = ("metrics", "spans", "alerts", "health", "logs")


def counters(daemon):
    """What must not move on a refusal: queue depth and received items, per signal."""
    text = scrape(daemon)
    return {
        (name, signal): total(text, name, signal=signal)
        for signal in SIGNALS
        for name in ("flext_collector_queue_items", "flext_collector_received_items_total")
    }


def unauthorized(daemon, signal):
    return total(scrape(daemon), "flext_collector_refused_items_total", signal=signal,
                  reason="unauthorized")


def traces_request(name, trace_byte, tenant_attribute=None):
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    if tenant_attribute is not None:
        attribute = resource_spans.resource.attributes.add()
        attribute.key = "flext.tenant"
        attribute.value.string_value = tenant_attribute
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id = bytes([trace_byte]) * 16
    span.span_id = bytes([trace_byte]) * 8
    span.name = name
    span.start_time_unix_nano = NOW
    span.end_time_unix_nano = NOW + 1000
    return request


def queued_span_tenants(daemon):
    """{span name: its resource's flext.tenant}, read from the queue's SQLite file."""
    tenants = {}
    with sqlite3.connect(f"file:{daemon.data_dir / 'queue.sqlite3'}?mode=ro", uri=True) as db:
        for (payload,) in db.execute("SELECT payload FROM records WHERE signal = 'spans'"):
            for rs in ExportTraceServiceRequest.FromString(payload).resource_spans:
                values = [a.value.string_value for a in rs.resource.attributes
                          if a.key == "flext.tenant"]
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        tenants[span.name] = values
    return tenants


PROTOBUF_TRACE = traces_request("refused", 9).SerializeToString()
ROUTES = [
    # (id, method, path, content type, body, signal counted, error body format)
    ("native_metrics", "POST", "/api/v1/metrics", "application/json",
     orjson.dumps({"name": "refused_total", "type": "counter", "value": 1, "service": "s"}),
     "metrics", "native"),
    ("native_spans", "POST", "/api/v1/spans", "application/json", b"{}", "spans", "native"),
    ("native_alerts", "POST", "/api/v1/alerts", "application/json",
     orjson.dumps({"name": "Refused", "service": "s"}), "alerts", "native"),
    ("native_health", "POST", "/api/v1/health", "application/json",
     orjson.dumps({"service": "refused", "status": "healthy"}), "health", "native"),
    ("otlp_traces_protobuf", "POST", "/v1/traces", "application/x-protobuf", PROTOBUF_TRACE,
     "spans", "protobuf"),
    ("otlp_traces_json", "POST", "/v1/traces", "application/json; charset=utf-8",
     otlp_json(traces_request("refused", 9)), "spans", "json"),
    ("otlp_metrics_json", "POST", "/v1/metrics", "application/json", b"{}", "metrics", "json"),
    ("otlp_logs_protobuf", "POST", "/v1/logs", "application/x-protobuf", b"", "logs",
     "protobuf"),
    ("list_alerts", "GET", "/api/v1/alerts", None, None, None, "native"),
    ("list_health", "GET", "/api/v1/health", None, None, None, "native"),
]
WITHOUT_A_VALID_TOKEN = [
    ("no_header", {}),
    ("wrong_token", bearer(WRONG)),
    ("token_prefix", bearer(TOKEN_A[:-1])),
    ("token_with_suffix", bearer(TOKEN_A + "x")),
    ("basic_scheme", {"Authorization": f"Basic {TOKEN_A}"}),
    ("bearer_without_token", {"Authorization": "Bearer"}),
]


@integration
@pytest.mark.parametrize("headers", [h for _, h in WITHOUT_A_VALID_TOKEN],
                         ids=[i for i, _ in WITHOUT_A_VALID_TOKEN])
@pytest.mark.parametrize(("method", "path", "ctype", "body", "signal", "answer"),
                         [r[1:] for r in ROUTES], ids=[r[0] for r in ROUTES])
def test_protected_routes_answer_401_and_keep_nothing(secured, method, path, ctype, body,
                                                      signal, answer, headers):
    before = counters(secured)
    refused_before = unauthorized(secured, signal) if signal else 0
    request_headers = {**headers, **({"Content-Type": ctype} if ctype else {})}
    response = httpx.request(method, f"{secured.url}{path}", content=body,
                             headers=request_headers, timeout=10)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    if answer == "native":
        assert response.json() == NATIVE_401
    elif answer == "json":
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"code": 16, "message": "missing or invalid bearer token"}
    else:
        assert response.headers["content-type"] == "application/x-protobuf"
        status = Status.FromString(response.content)
        assert (status.code, status.message) == (16, "missing or invalid bearer token")
    assert counters(secured) == before
    if signal:
        assert unauthorized(secured, signal) == refused_before + 1


@integration
@pytest.mark.parametrize("metadata", [(), (("authorization", f"Bearer {WRONG}"),),
                                      (("authorization", f"Basic {TOKEN}"),),
                                      (("x-token", TOKEN),)],
                         ids=["none", "wrong_token", "basic_scheme", "other_key"])
def test_grpc_calls_without_a_valid_token_are_unauthenticated(secured, metadata):
    before = counters(secured)
    refused_before = unauthorized(secured, "spans")
    with grpc.insecure_channel(secured.grpc_target) as channel, pytest.raises(
        grpc.RpcError
    ) as failed:
        channel.unary_unary(TRACE_EXPORT)(PROTOBUF_TRACE, metadata=metadata, timeout=10)
    assert failed.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert failed.value.details() == "missing or invalid bearer token"
    assert counters(secured) == before
    assert unauthorized(secured, "spans") == refused_before + 1


@integration
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/docs", "/openapi.json", "/metrics"])
def test_liveness_readiness_docs_and_metrics_stay_open(secured, path):
    assert httpx.get(f"{secured.url}{path}", timeout=10).status_code == 200


def preflight(daemon, origin, path="/v1/traces"):
    return httpx.options(f"{daemon.url}{path}", timeout=10, headers={
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization,x-request-id",
    })


@integration
def test_cors_preflight_needs_no_token_and_only_allowed_origins_pass(secured):
    allowed = preflight(secured, ORIGIN)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    allowed_headers = allowed.headers["access-control-allow-headers"].lower()
    for header in ("content-type", "content-encoding", "authorization", "x-request-id"):
        assert header in allowed_headers
    refused = preflight(secured, "https://evil.example.com")
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    native = preflight(secured, ORIGIN, "/api/v1/metrics")
    assert "access-control-allow-origin" not in native.headers
    # The browser can read the answers of the POSTs themselves, a 401 included.
    for headers, status in (({}, 401), (bearer(TOKEN_A), 200)):
        answer = httpx.post(f"{secured.url}/v1/traces", content=PROTOBUF_TRACE, timeout=10,
                            headers={"Origin": ORIGIN, "Content-Type": "application/x-protobuf",
                                     **headers})
        assert answer.status_code == status
        assert answer.headers["access-control-allow-origin"] == ORIGIN


@integration
def test_native_metrics_carry_the_tenant_label(secured):
    metric = {"name": "auth_jobs", "type": "counter", "value": 1, "service": "cron"}
    for token, labels in ((TOKEN_A, {"tenant": "forged"}), (TOKEN, {}), (TOKEN_B, {})):
        answer = httpx.post(f"{secured.url}/api/v1/metrics", headers=bearer(token), timeout=10,
                            json=[{**metric, "labels": labels}, {**metric, "value": 2}])
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"accepted": 2}
    text = poll(lambda: scrape(secured), lambda t: 'tenant="team-b"' in t, 10, 0.05,
                "tenant series on /metrics")
    for tenant in ("team-a", "default", "team-b"):
        assert total(text, "auth_jobs_total", job="cron", tenant=tenant) == 3
    assert "forged" not in text


@integration
def test_otlp_metrics_carry_the_tenant_label(secured):
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "otlp-svc"
    resource.resource.attributes.add(key="flext.tenant").value.string_value = "forged"
    metric = resource.scope_metrics.add().metrics.add(name="auth_otlp_level")
    point = metric.gauge.data_points.add(as_double=5, time_unix_nano=NOW)
    point.attributes.add(key="tenant").value.string_value = "forged-too"
    answer = httpx.post(f"{secured.url}/v1/metrics", content=request.SerializeToString(),
                        headers={"Content-Type": "application/x-protobuf", **bearer(TOKEN_A)},
                        timeout=10)
    assert answer.status_code == 200, answer.text
    text = poll(lambda: scrape(secured), lambda t: "auth_otlp_level{" in t, 10, 0.05,
                "the OTLP gauge on /metrics")
    assert total(text, "auth_otlp_level", job="otlp-svc", tenant="team-a") == 5
    assert "forged" not in text


@integration
def test_spans_carry_the_tenant_resource_attribute(secured):
    native = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "name": "native-a", "service": "web",
              "start_time": NOW, "end_time": NOW + 1}
    answers = [
        httpx.post(f"{secured.url}/api/v1/spans", json=native, headers=bearer(TOKEN_A),
                   timeout=10),
        httpx.post(f"{secured.url}/v1/traces", content=otlp_json(traces_request("json-b", 2)),
                   headers={"Content-Type": "application/json", **bearer(TOKEN_B)}, timeout=10),
        httpx.post(f"{secured.url}/v1/traces",
                   content=traces_request("forged-default", 3, "team-a").SerializeToString(),
                   headers={"Content-Type": "application/x-protobuf", **bearer(TOKEN)},
                   timeout=10),
    ]
    assert [a.status_code for a in answers] == [202, 200, 200], [a.text for a in answers]
    with grpc.insecure_channel(secured.grpc_target) as channel:
        channel.unary_unary(TRACE_EXPORT)(
            traces_request("grpc-a", 4).SerializeToString(),
            metadata=(("authorization", f"Bearer {TOKEN_A}"),), timeout=10,
        )
    tenants = queued_span_tenants(secured)
    assert tenants["native-a"] == ["team-a"]
    assert tenants["json-b"] == ["team-b"]
    assert tenants["forged-default"] == ["default"]
    assert tenants["grpc-a"] == ["team-a"]


@integration
def test_alerts_carry_the_tenant_label_and_health_reports_are_taken(secured):
    alert = {"name": "DiskFull", "service": "db", "severity": "critical"}
    assert httpx.post(f"{secured.url}/api/v1/alerts", json=alert, headers=bearer(TOKEN_A),
                      timeout=10).status_code == 202
    report = {"service": "db", "status": "degraded"}
    assert httpx.post(f"{secured.url}/api/v1/health", json=report, headers=bearer(TOKEN_B),
                      timeout=10).status_code == 202

    def held(token):
        return httpx.get(f"{secured.url}/api/v1/alerts", headers=bearer(token),
                         timeout=10).json()["alerts"]

    alerts = poll(lambda: held(TOKEN_A),
                  lambda a: any(x["labels"]["alertname"] == "DiskFull" for x in a), 10,
                  0.05, "alert held")
    disk = next(a for a in alerts if a["labels"]["alertname"] == "DiskFull")
    assert disk["labels"]["tenant"] == "team-a"
    # Each tenant reads its own alerts and services only.
    assert all(a["labels"].get("tenant") == "team-b" for a in held(TOKEN_B))

    def services(token):
        return httpx.get(f"{secured.url}/api/v1/health", headers=bearer(token),
                         timeout=10).json()["services"]

    mine = poll(lambda: services(TOKEN_B), lambda s: any(x["service"] == "db" for x in s), 10,
                0.05, "health report applied")
    assert next(s for s in mine if s["service"] == "db")["status"] == "degraded"
    assert all(s["service"] != "db" for s in services(TOKEN))


@integration
def test_no_token_reaches_the_log(secured):
    log = secured.log_path.read_text()
    assert "DEBUG" in log
    for token in (TOKEN, TOKEN_A, TOKEN_B, WRONG):
        assert token not in log


def test_protect_metrics_puts_metrics_behind_a_token(daemon_factory, tmp_path):
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"{TOKEN}\n")
    daemon = daemon_factory({"server": {"auth": {"tokens_file": str(tokens_file),
                                                 "protect_metrics": True}}})
    refused = httpx.get(f"{daemon.url}/metrics", timeout=10)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert "flext_collector_received_items_total" in scrape(daemon, bearer(TOKEN))
    assert httpx.get(f"{daemon.url}/healthz", timeout=10).status_code == 200


def check_config(path):
    return subprocess.run([sys.executable, "-m", "flext_observability", "check-config",
                           str(path)], capture_output=True, text=True, timeout=30,
                          cwd=REPO_ROOT, check=False)


@integration
def test_check_config_names_the_keys_and_never_prints_a_token(tmp_path):
    secrets_used = [f"secret-{secrets.token_hex(6)}" for _ in range(4)]
    bad_file = tmp_path / "bad-tokens"
    bad_file.write_text(f"# fine\nteam-a:{secrets_used[2]}\nteam-b:{secrets_used[3]} space\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"server": {"auth": {
        "tokens": [f"{secrets_used[0]} with space", {"token": secrets_used[1], "tenant": "a b"},
                   {"tenant": "x"}, 42],
        "tokens_file": str(bad_file),
    }}}))
    result = check_config(bad)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    for key in ("server.auth.tokens.0", "server.auth.tokens.1.entry.tenant",
                "server.auth.tokens.2.entry.token", "server.auth.tokens.3",
                "server.auth.tokens_file", "line 3"):
        assert key in output
    for value in secrets_used:
        assert value not in output

    clash = tmp_path / "clash.yaml"
    clash.write_text(yaml.safe_dump({"server": {"auth": {
        "tokens": [secrets_used[0], {"token": secrets_used[0], "tenant": "team-a"}]}}}))
    result = check_config(clash)
    assert result.returncode == 2
    assert "server.auth: " in result.stdout
    assert "two tenants" in result.stdout
    assert secrets_used[0] not in result.stdout

    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({"server": {"auth": {
        "tokens_file": str(tmp_path / "nope"), "protect_metrics": True}}}))
    result = check_config(missing)
    assert result.returncode == 2
    assert "server.auth.tokens_file" in result.stdout
    assert "No such file" in result.stdout

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"server": {"auth": {"tokens": [secrets_used[0]]}}}))
    result = check_config(good)
    assert result.returncode == 0
    assert secrets_used[0] not in result.stdout + result.stderr


def telemetry():
    return SelfTelemetry(CollectorRegistry(), MemoryQueue(10, 10_000, 1))


@pytest.mark.parametrize(("header", "tenant"), [
    (None, None),
    (b"", None),
    (f"Bearer {TOKEN}".encode(), "default"),
    (f"bearer   {TOKEN_A}  ".encode(), "team-a"),
    (f"BEARER {TOKEN_B}".encode(), "team-b"),
    (f"Bearer {TOKEN}{TOKEN_A}".encode(), None),
    (f"Token {TOKEN}".encode(), None),
    (TOKEN.encode(), None),
    (b"Bearer", None),
], ids=["absent", "empty", "bearer", "lower-case-spaced", "upper-case", "two-tokens",
        "other-scheme", "no-scheme", "no-token"])
def test_authenticator_maps_each_token_to_its_tenant(header, tenant):
    auth = AuthConfig(tokens=[TOKEN, {"token": TOKEN_A, "tenant": "team-a"},
                              {"token": TOKEN_B, "tenant": "team-b"}])
    authenticator = Authenticator.from_config(auth, telemetry())
    assert authenticator is not None
    assert authenticator.tenant(header) == tenant


def test_no_token_means_no_authentication():
    assert Authenticator.from_config(AuthConfig(), telemetry()) is None
    assert bearer_token(b"Bearer  abc ") == b"abc"
