"""Every ingestion limit: what is refused, how it is answered, which key it names, how it
is counted in flext_collector_refused_items_total{signal, reason}.

The limiter and the gate are exercised in process (the RSS source and the clock are
injected, as a real process cannot be made to grow and shrink on cue); every answer is
checked against the real daemon.
"""

import asyncio
import gzip
import socket
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import orjson
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from prometheus_client import CollectorRegistry

from flext_observability.config import ConfigError, load_config
from flext_observability.models.otlp import AttributeLimits, parse_logs, parse_traces
from flext_observability.pipeline.queue import MemoryQueue, Signal
from flext_observability.processors.limits import MIB, Gate, MemoryLimiter, Throttled
from flext_observability.telemetry import SelfTelemetry
from helpers.clock import Clock
from helpers.exposition import total
from helpers.procs import poll

NOW = 1_700_000_000_000_000_000
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def metric(name="limited", service="svc", **fields):
    return {"name": name, "type": "counter", "value": 1, "service": service, **fields}


def span(index=1, **fields):
    return {"trace_id": TRACE, "span_id": f"{index:016x}", "name": "op", "service": "svc",
            "start_time": NOW, "end_time": NOW + 1, **fields}


def refused(daemon, signal, reason):
    text = httpx.get(f"{daemon.url}/metrics", timeout=10).text
    return total(text, "flext_collector_refused_items_total", signal=signal, reason=reason)


def post(daemon, route, body, **kwargs):
    return httpx.post(f"{daemon.url}{route}", content=orjson.dumps(body),
                      headers={"Content-Type": "application/json"}, timeout=30, **kwargs)


def otlp_span(index, attributes=()):
    return {"trace_id": bytes.fromhex(TRACE), "span_id": index.to_bytes(8, "big"),
            "name": "op", "start_time_unix_nano": 1, "end_time_unix_nano": 2,
            "attributes": list(attributes)}


def traces_request(*spans):
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for fields in spans:
        scope.spans.add(**fields)
    return request


def string_attribute(key, value):
    return KeyValue(key=key, value=AnyValue(string_value=value))


def many_attributes(count):
    return [string_attribute(f"a{i}", "v") for i in range(count)]


# --- configuration -----------------------------------------------------------------------


def test_limits_defaults():
    limits = load_config(None).limits
    assert (limits.max_concurrent_requests, limits.memory_limit_mib,
            limits.memory_spike_limit_mib, limits.memory_check_interval) == (256, 1024, 200, 0.1)
    assert (limits.max_labels_per_metric, limits.max_label_value_length) == (32, 2048)
    assert (limits.max_attributes_per_item, limits.max_attribute_value_length) == (128, 1 << 20)
    assert load_config(None).exporters.prometheus.max_series_per_service == 20_000


@pytest.mark.parametrize(("yaml_text", "words"), [
    ("limits: {memory_limit_mib: 100, memory_spike_limit_mib: 100}",
     "limits.memory_spike_limit_mib must be smaller than limits.memory_limit_mib"),
    ("limits: {max_label_value_length: 4096}", "limits.max_label_value_length:"),
    ("limits: {max_concurrent_requests: 0}", "limits.max_concurrent_requests:"),
    ("exporters: {prometheus: {max_series_per_service: 0}}",
     "exporters.prometheus.max_series_per_service:"),
])
def test_bad_limits_are_refused_with_their_key(tmp_path, yaml_text, words):
    path = tmp_path / "collector.yaml"
    path.write_text(textwrap.dedent(yaml_text))
    with pytest.raises(ConfigError) as failed:
        load_config(path)
    assert words in "\n".join(failed.value.errors)


def test_memory_limiter_can_be_turned_off(tmp_path):
    path = tmp_path / "collector.yaml"
    path.write_text("limits: {memory_limit_mib: 0}\n")
    assert load_config(path).limits.memory_limit_mib == 0


# --- the memory limiter and the gate, in process -------------------------------------------


def test_memory_limiter_refuses_above_the_soft_limit_until_rss_drops():
    readings = iter([50, 95, 95, 85, 70, 70])
    clock = Clock()
    limiter = MemoryLimiter(100 * MIB, 20 * MIB, 0.1, rss=lambda: next(readings) * MIB,
                            clock=clock)
    limiter.check()
    assert not limiter.limited
    limiter.check()  # 95 > 80: reclaim, read again (still 95): refuse
    assert limiter.limited
    assert limiter.state() == {"limited": True, "rss_mib": 95.0, "soft_limit_mib": 80,
                               "limit_mib": 100}
    message = limiter.message(5)
    assert "limits.memory_limit_mib (100)" in message
    assert "limits.memory_spike_limit_mib (20)" in message
    limiter.check()  # 85: no reclaim this soon, still above
    assert limiter.limited
    clock.now += 10
    limiter.check()  # 70 after a reclaim: back below
    assert not limiter.limited
    assert limiter.state()["rss_mib"] == 70.0


async def test_memory_limiter_samples_in_the_background_and_stops():
    samples = []

    def rss():
        samples.append(time.monotonic())
        return 10 * MIB

    limiter = MemoryLimiter(100 * MIB, 20 * MIB, 0.01, rss=rss)
    await limiter.start()
    await asyncio.sleep(0.1)
    await limiter.shutdown()
    taken = len(samples)
    assert taken >= 3
    await asyncio.sleep(0.05)
    assert len(samples) == taken
    await limiter.shutdown()


async def test_memory_limiter_off_never_samples():
    limiter = MemoryLimiter(0, 0, 0.01, rss=lambda: pytest.fail("sampled"))
    await limiter.start()
    assert limiter.state() == {"limited": False, "limit_mib": 0}
    await limiter.shutdown()


def make_gate(queue=None, max_in_flight=2):
    queue = queue or MemoryQueue(10, 1000, 7)
    registry = CollectorRegistry()
    telemetry = SelfTelemetry(registry, queue)
    return Gate(max_in_flight, MemoryLimiter(0, 0, 0.1), queue, telemetry, retry_after=3), registry


def test_gate_admits_up_to_its_limit_and_counts_refusals():
    gate, registry = make_gate()
    gate.enter("metrics")
    gate.enter("metrics")
    with pytest.raises(Throttled) as throttled:
        gate.enter("spans")
    assert throttled.value.reason == "concurrency_limit"
    assert "limits.max_concurrent_requests=2" in throttled.value.message
    assert throttled.value.retry_after == 3
    assert registry.get_sample_value(
        "flext_collector_refused_items_total", {"signal": "spans", "reason": "concurrency_limit"}
    ) == 1
    gate.leave()
    gate.enter("spans")
    assert gate.in_flight == 2


@pytest.mark.parametrize(("max_items", "max_bytes", "key"), [
    (3, 1000, "queue.max_items"), (10, 6, "queue.max_bytes"),
])
async def test_gate_refuses_at_once_while_the_queue_is_full(max_items, max_bytes, key):
    queue = MemoryQueue(max_items, max_bytes, 7)
    await queue.start()
    gate, registry = make_gate(queue)
    gate.enter("metrics")
    gate.leave()
    await queue.put(Signal.METRICS, "native-json", b"123456", 3)
    with pytest.raises(Throttled) as throttled:
        gate.enter("metrics")
    assert (throttled.value.reason, throttled.value.status) == ("queue_full", 429)
    assert throttled.value.retry_after == 7
    assert key in throttled.value.message
    assert registry.get_sample_value(
        "flext_collector_refused_items_total", {"signal": "metrics", "reason": "queue_full"}
    ) == 1


# --- attribute limits in the OTLP walk -----------------------------------------------------


LIMITS = AttributeLimits(max_attributes=4, max_value_length=16)


def long_values():
    nested = AnyValue()
    nested.array_value.values.add().kvlist_value.values.add(
        key="deep", value=AnyValue(string_value="x" * 17))
    return [
        [string_attribute("s", "x" * 17)],
        [KeyValue(key="b", value=AnyValue(bytes_value=b"x" * 17))],
        [KeyValue(key="n", value=nested)],
    ]


def test_spans_past_attribute_limits_are_rejected_naming_the_key():
    request = traces_request(
        otlp_span(1, many_attributes(4)),
        otlp_span(2, many_attributes(5)),
        *(otlp_span(3 + i, attributes) for i, attributes in enumerate(long_values())),
        otlp_span(6, [string_attribute("s", "x" * 16)]),
    )
    parsed = parse_traces(request.SerializeToString(), json=False, limits=LIMITS)
    assert (parsed.accepted, parsed.rejected, parsed.limited) == (2, 4, 4)
    assert "spans[1].attributes: 5 attributes are more than limits.max_attributes_per_item=4" in (
        parsed.message)
    assert "spans[2].attributes[0].value: the value of 's' is longer than " \
           "limits.max_attribute_value_length=16" in parsed.message
    kept = ExportTraceServiceRequest.FromString(parsed.payload)
    assert [s.span_id[-1] for s in kept.resource_spans[0].scope_spans[0].spans] == [1, 6]


def test_value_lengths_are_looked_at_only_in_bodies_longer_than_the_limit():
    body = traces_request(otlp_span(1, [string_attribute("s", "x" * 17)])).SerializeToString()
    roomy = AttributeLimits(max_attributes=4, max_value_length=len(body))
    assert parse_traces(body, json=False, limits=roomy).rejected == 0
    tight = AttributeLimits(max_attributes=4, max_value_length=16)
    assert parse_traces(body, json=False, limits=tight).limited == 1


def test_invalid_and_limited_are_told_apart():
    request = traces_request(otlp_span(1, many_attributes(5)), {**otlp_span(2), "name": ""})
    parsed = parse_traces(request.SerializeToString(), json=False, limits=LIMITS)
    assert (parsed.rejected, parsed.limited) == (2, 1)


def test_log_records_past_attribute_limits_are_rejected():
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    records.add(attributes=many_attributes(5))
    records.add(attributes=[string_attribute("s", "x" * 17)])
    records.add(attributes=many_attributes(1))
    parsed = parse_logs(request.SerializeToString(), json=False, limits=LIMITS)
    assert (parsed.accepted, parsed.rejected, parsed.limited) == (1, 2, 2)
    assert "logRecords[0].attributes: 5 attributes" in parsed.message
    assert "limits.max_attribute_value_length=16" in parsed.message


# --- against the daemon ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    from helpers.procs import Daemon

    daemon = Daemon(tmp_path_factory.mktemp("limits"), config_overrides={
        "server": {"max_body_bytes": 200_000},
        "limits": {"max_labels_per_metric": 3, "max_label_value_length": 64,
                   "max_attributes_per_item": 4, "max_attribute_value_length": 100},
        "exporters": {"prometheus": {"max_series_per_service": 3}},
        "queue": {"hold_unexported": True},
    })
    daemon.start()
    yield daemon
    daemon.stop()


LABEL_CASES = [
    # (id, item, field, message)
    ("count", metric(labels={"a": "1", "b": "2", "c": "3", "d": "4"}), "labels",
     "4 labels are more than limits.max_labels_per_metric=3"),
    ("length", metric(labels={"a": "x" * 65}), "labels.a",
     "is longer than limits.max_label_value_length=64"),
    ("past_the_model_cap", metric(labels={"a": "x" * 3000}), "labels.a",
     "is longer than limits.max_label_value_length=64"),
]


@pytest.mark.parametrize(("case", "item", "field", "message"), LABEL_CASES,
                         ids=[c[0] for c in LABEL_CASES])
def test_native_label_limits_are_422_naming_field_and_key(limited, case, item, field, message):
    before = refused(limited, "metrics", "label_limit")
    answer = post(limited, "/api/v1/metrics", [metric(labels={"a": "ok"}), item])
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [{"index": 1, "field": field, "message": message}]
    assert refused(limited, "metrics", "label_limit") == before + 2


def test_label_limits_are_listed_beside_other_errors(limited):
    answer = post(limited, "/api/v1/metrics", [
        metric(labels={"a": "x" * 3000}), metric(value=-1), metric(value="nan?"),
        metric(labels={"a": "1", "b": "2", "c": "3", "d": "4"}),
    ])
    assert answer.status_code == 422
    assert [(e["index"], e["field"]) for e in answer.json()["errors"]] == [
        (0, "labels.a"), (1, "value"), (2, "value"), (3, "labels")]


def test_native_span_attribute_limits_are_422_naming_the_key(limited):
    before = refused(limited, "spans", "attribute_limit")
    answer = post(limited, "/api/v1/spans", [
        span(1, attributes={f"k{i}": i for i in range(5)}),
        span(2, attributes={"ok": "x" * 100, "tags": ["a", "x" * 101]}),
        span(3, attributes={f"k{i}": i for i in range(4)}),
    ])
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [
        {"index": 0, "field": "attributes",
         "message": "5 attributes are more than limits.max_attributes_per_item=4"},
        {"index": 1, "field": "attributes.tags",
         "message": "is longer than limits.max_attribute_value_length=100"},
    ]
    assert refused(limited, "spans", "attribute_limit") == before + 3


def test_otlp_attribute_limits_are_a_partial_success_over_http_and_grpc(limited):
    body = traces_request(
        otlp_span(1, many_attributes(5)), otlp_span(2),
        otlp_span(3, [string_attribute("s", "x" * 101)]),
    ).SerializeToString()
    before = refused(limited, "spans", "attribute_limit")
    answer = httpx.post(f"{limited.url}/v1/traces", content=body, headers=PROTOBUF, timeout=10)
    assert answer.status_code == 200
    partial = ExportTraceServiceResponse.FromString(answer.content).partial_success
    assert partial.rejected_spans == 2
    assert "limits.max_attributes_per_item=4" in partial.error_message
    assert "limits.max_attribute_value_length=100" in partial.error_message
    with grpc.insecure_channel(limited.grpc_target) as channel:
        raw = channel.unary_unary(TRACE_EXPORT)(body, timeout=10)
    assert ExportTraceServiceResponse.FromString(raw).partial_success.rejected_spans == 2
    assert refused(limited, "spans", "attribute_limit") == before + 4


def test_otlp_data_points_past_the_label_limits_are_a_partial_success(limited):
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "otlp-labels"
    points = resource.scope_metrics.add().metrics.add(name="otlp_labelled").gauge.data_points
    points.add(as_double=1, time_unix_nano=time.time_ns()).attributes.add(
        key="ok").value.string_value = "fine"
    points.add(as_double=2, time_unix_nano=time.time_ns()).attributes.extend(many_attributes(4))
    points.add(as_double=3, time_unix_nano=time.time_ns()).attributes.append(
        string_attribute("long", "x" * 65))
    before = refused(limited, "metrics", "label_limit") or 0
    answer = httpx.post(f"{limited.url}/v1/metrics", content=request.SerializeToString(),
                        headers=PROTOBUF, timeout=10)
    assert answer.status_code == 200
    partial = ExportMetricsServiceResponse.FromString(answer.content).partial_success
    assert partial.rejected_data_points == 2
    assert "limits.max_labels_per_metric=3" in partial.error_message
    assert "limits.max_label_value_length=64" in partial.error_message
    assert refused(limited, "metrics", "label_limit") == before + 2
    poll(lambda: httpx.get(f"{limited.url}/metrics", timeout=10).text,
         lambda t: 'otlp_labelled{job="otlp-labels",ok="fine"' in t, 10, 0.05,
         "the point within the limits")


def test_series_per_service_are_limited_naming_service_and_key(limited):
    first = [metric("per_service", "noisy", labels={"n": str(i)}) for i in range(3)]
    assert post(limited, "/api/v1/metrics", first).status_code == 202
    poll(lambda: total(httpx.get(f"{limited.url}/metrics").text, "per_service_total",
                        job="noisy", n="2"), bool, 10, 0.05, "series applied")
    before = refused(limited, "metrics", "series_limit")
    answer = post(limited, "/api/v1/metrics",
                  [metric("per_service", "noisy", labels={"n": "new"})])
    assert answer.status_code == 422
    error = answer.json()["errors"][0]
    assert error["field"] == "service"
    assert "service 'noisy'" in error["message"]
    assert "exporters.prometheus.max_series_per_service=3" in error["message"]
    assert refused(limited, "metrics", "series_limit") == before + 1
    assert post(limited, "/api/v1/metrics", first).status_code == 202
    quiet = [metric("per_service", "quiet", labels={"n": str(i)}) for i in range(3)]
    assert post(limited, "/api/v1/metrics", quiet).status_code == 202


@pytest.mark.parametrize("route", ["/api/v1/metrics", "/v1/traces"])
@pytest.mark.parametrize(("body", "encoding", "words"), [
    (b" " * 200_001, None, "larger than 200000 bytes (server.max_body_bytes)"),
    (gzip.compress(b" " * 300_000), "gzip",
     "larger than 200000 bytes after decompression (server.max_body_bytes)"),
])
def test_bodies_past_max_body_bytes_are_413_naming_the_key(limited, route, body, encoding,
                                                             words):
    signal = "metrics" if "metrics" in route else "spans"
    before = refused(limited, signal, "too_large")
    headers = {"Content-Type": "application/json"}
    if encoding:
        headers["Content-Encoding"] = encoding
    answer = httpx.post(f"{limited.url}{route}", content=body, headers=headers, timeout=10)
    assert answer.status_code == 413
    message = answer.json()["errors"][0]["message"] if "api" in route else answer.json()[
        "message"]
    assert words in message
    assert refused(limited, signal, "too_large") == before + 1


def hold_request(daemon, route="/api/v1/metrics"):
    """A POST whose body never finishes: it stays in flight until the socket is closed."""
    host, port = daemon.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"POST {route} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: 100\r\n\r\n[".encode())
    return sock


def test_http_requests_past_max_concurrent_requests_get_503_at_once(daemon_factory):
    daemon = daemon_factory({"limits": {"max_concurrent_requests": 2,
                                        "retry_after_seconds": 2}})
    held = [hold_request(daemon), hold_request(daemon, "/v1/traces")]
    try:
        answer = poll(lambda: post(daemon, "/api/v1/metrics", metric()),
                      lambda a: a.status_code == 503, 10, 0.05, "503 at the limit")
        assert answer.headers["Retry-After"] == "2"
        assert "limits.max_concurrent_requests=2" in answer.json()["errors"][0]["message"]
        otlp = httpx.post(f"{daemon.url}/v1/traces", content=b"", headers=PROTOBUF, timeout=10)
        assert otlp.status_code == 503
        assert "limits.max_concurrent_requests" in Status.FromString(otlp.content).message
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/api/v1/alerts"):
            assert httpx.get(f"{daemon.url}{path}", timeout=10).status_code == 200, path
        assert refused(daemon, "metrics", "concurrency_limit") >= 1
        assert refused(daemon, "spans", "concurrency_limit") == 1
    finally:
        for sock in held:
            sock.close()
    poll(lambda: post(daemon, "/api/v1/metrics", metric()).status_code, lambda s: s == 202,
         10, 0.05, "accepted again")
    # The held requests were cut off mid-body: counted, and no traceback in the log.
    assert refused(daemon, "metrics", "client_disconnected") == 1
    assert refused(daemon, "spans", "client_disconnected") == 1
    assert "Traceback" not in daemon.log_tail(1000)


def test_grpc_calls_past_max_concurrent_requests_are_resource_exhausted(daemon_factory):
    daemon = daemon_factory({"limits": {"max_concurrent_requests": 1},
                             "queue": {"hold_unexported": True}})
    body = traces_request(*(otlp_span(i + 1, many_attributes(8)) for i in range(4000)))
    body = body.SerializeToString()

    def call(channel):
        try:
            channel.unary_unary(TRACE_EXPORT)(body, timeout=30)
        except grpc.RpcError as exc:
            return exc
        return None

    named = []
    with grpc.insecure_channel(daemon.grpc_target, options=[
            ("grpc.max_send_message_length", 64 << 20)]) as channel, ThreadPoolExecutor(16) as pool:
        for _ in range(5):
            outcomes = list(pool.map(lambda _: call(channel), range(32)))
            errors = [o for o in outcomes if o is not None]
            assert {e.code() for e in errors} <= {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert len(errors) < len(outcomes)
            named = [e for e in errors if "limits.max_concurrent_requests=1" in e.details()]
            if named:
                break
    assert named, "no call was refused by the gate"
    details = dict(named[0].trailing_metadata())["grpc-status-details-bin"]
    retry = RetryInfo()
    Status.FromString(details).details[0].Unpack(retry)
    assert retry.retry_delay.seconds == 5
    assert refused(daemon, "spans", "concurrency_limit") >= 1


def test_memory_limit_refuses_data_but_not_health_readiness_or_metrics(daemon_factory):
    # Far below what the process takes at rest: the limiter refuses from the start.
    daemon = daemon_factory({"limits": {"memory_limit_mib": 30, "memory_spike_limit_mib": 10}})
    answer = post(daemon, "/api/v1/metrics", metric())
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    message = answer.json()["errors"][0]["message"]
    assert "limits.memory_limit_mib (30)" in message
    assert "limits.memory_spike_limit_mib (10)" in message
    otlp = httpx.post(f"{daemon.url}/v1/traces", content=b"{}",
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert otlp.status_code == 503
    assert otlp.json()["code"] == 14
    with grpc.insecure_channel(daemon.grpc_target) as channel, pytest.raises(
        grpc.RpcError
    ) as failed:
        channel.unary_unary(TRACE_EXPORT)(b"", timeout=10)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "limits.memory_limit_mib" in failed.value.details()
    assert httpx.get(f"{daemon.url}/healthz", timeout=10).status_code == 200
    ready = httpx.get(f"{daemon.url}/readyz", timeout=10)
    assert ready.status_code == 503
    memory = ready.json()["memory"]
    assert memory["limited"] is True
    assert memory["rss_mib"] > memory["soft_limit_mib"] == 20
    assert refused(daemon, "metrics", "memory_limit") == 1
    assert refused(daemon, "spans", "memory_limit") == 2


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("workers", [0, 1], ids=["one-process", "1-worker"])
@pytest.mark.parametrize(("route", "signal"), [("/api/v1/metrics", "metrics"),
                                               ("/v1/traces", "spans")])
def test_a_body_that_does_not_arrive_in_time_is_408_and_frees_its_slot(daemon_factory, workers,
                                                                      route, signal):
    daemon = daemon_factory({"server": {"read_timeout": "1s", "workers": workers},
                             "limits": {"max_concurrent_requests": 1}})
    started = time.monotonic()
    with hold_request(daemon, route) as sock:
        answer = read_answer(sock)
    assert 0.9 < time.monotonic() - started < 8
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"server.read_timeout" in answer
    assert post(daemon, "/api/v1/metrics", metric()).status_code == 202
    poll(lambda: refused(daemon, signal, "timeout"), lambda n: n == 1, 10, 0.05,
         "the timeout counted")
