"""Fuzzing the daemon: no input makes it answer 5xx, crash, hang or grow.

1. schemathesis against the daemon's own OpenAPI (the native routes), through its CLI.
2. hypothesis: OTLP bodies mutated from tests/fixtures/otlp and built from the protobuf
   messages (byte flips, truncation, random fields, wrong JSON types, huge and negative
   numbers, deep nesting, random content encodings), over OTLP/HTTP (protobuf and JSON)
   and OTLP/gRPC. Every request has a timeout; the daemon must stay alive and its RSS
   within FLAT_RSS_MIB of what it was after a warm-up. Bodies are also sent as many
   concatenated compression members (empty ones too, past body.MAX_MEMBERS).
3. hypothesis: native bodies (every route) with integers past 64 bits, floats past int64,
   invalid UTF-8, collision-prone and reserved names, attribute arrays, and the same
   compression shapes: answered 2xx or 4xx, never 5xx.

FUZZ_EXAMPLES (default 2000) sets the number of inputs (requests) of the OTLP and the native
fuzzers, a quarter of it for the colliding names; schemathesis runs FUZZ_SCHEMA_EXAMPLES
(default a twentieth of FUZZ_EXAMPLES) per operation. `make fuzz-long` raises them and runs the
fuzzers in parallel processes, each against its own daemon. Cheap per input: one keep-alive
HTTP connection (http.client: a fraction of httpx's CPU per request) and one gRPC channel
per fuzzer; hypothesis examples of BATCH values (its engine costs per example about what
drawing a value does); after each OTLP and native input drawn, VARIANTS byte-level mutants
of its body (flips, cuts, insertions, copied slices, by a seeded random.Random: a sliver of
the CPU of a hypothesis draw), each sent and counted as an input; the daemon's liveness and
RSS, and the exposition, checked every CHECK_EVERY inputs and at the end; at most ROUND
inputs per hypothesis run (a fresh run each, so that its record of the choices tried stays
small), with a line of progress after each.
"""

import copy
import gzip
import http.client
import json
import os
import random
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from helpers.exposition import exposition_problems, total
from helpers.fixtures import OTLP_FIXTURES
from helpers.procs import Daemon

FIXTURES = OTLP_FIXTURES
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2000"))
SCHEMA_EXAMPLES = int(os.environ.get("FUZZ_SCHEMA_EXAMPLES", max(10, FUZZ_EXAMPLES // 20)))
# schemathesis runs in a subprocess with its own deadline, longer than the per-test default.
SCHEMA_TIMEOUT = max(1800, SCHEMA_EXAMPLES * 10)
FLAT_RSS_MIB = 100
BATCH = 8
VARIANTS = 7
ROUND = 5_000
# With FUZZ_SECONDS, no hypothesis run starts after that many seconds of a fuzzer (the inputs
# passed are printed and the test passes with them): for a long run that must end in time.
FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "inf"))
CHECK_EVERY = 500
MAX_BODY = 4 * 1024 * 1024
TIMEOUT = 15
HTTP_ANSWERS = {200, 400, 413, 415, 429, 503}
GRPC_ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}
GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
SIGNALS = tuple(GRPC_METHODS)
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
INT64 = (-(2**63), 2**63 - 1)
UINT64 = (0, 2**64 - 1)


def signal_of(path: Path) -> str:
    if path.suffix == ".json":
        top = orjson.loads(path.read_bytes())
        return next(s for k, s in (("resourceSpans", "traces"), ("resourceMetrics", "metrics"),
                                   ("resourceLogs", "logs")) if k in top)
    return "traces" if "trace" in path.name else "metrics" if "metric" in path.name else "logs"


PB_FIXTURES = [(signal_of(p), p.read_bytes()) for p in sorted((FIXTURES / "pb").glob("*.pb"))]
JSON_FIXTURES = [(signal_of(p), orjson.loads(p.read_bytes()))
                 for p in sorted(FIXTURES.glob("*.json"))]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Wire:
    """One keep-alive HTTP/1.1 connection to the daemon, opened again when the daemon has
    closed it (idle past server.keep_alive_timeout, or after an answer that closes it)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port
        self._connection: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        reused = self._connection is not None
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self._host, self._port,
                                                          timeout=TIMEOUT)
        try:
            self._connection.request("POST", path, body=body, headers=headers)
            answer = self._connection.getresponse()
            data = answer.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.close()
            if not reused:
                raise
            return self.post(path, body, headers)  # the daemon had closed the idle connection
        if answer.will_close:
            self.close()
        return answer.status, data

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def fuzz_rounds(name: str, inputs: int, strategy: SearchStrategy[Any],
                test: Callable[[Any], int], check: Callable[[], str], per_draw: int = 1) -> None:
    """`test` (which sends `per_draw` inputs per value) on `inputs` inputs from `strategy`:
    hypothesis examples of BATCH values each (its engine costs as much per example as
    drawing a value), in hypothesis runs of at most ROUND inputs; `check()` (assertions, and
    what it saw) about every CHECK_EVERY inputs and after each run, with one line of
    progress per run."""
    done = 0
    deadline = time.monotonic() + FUZZ_SECONDS

    def batch(values: list[Any]) -> None:
        nonlocal done
        for value in values:
            before = done
            done += test(value)
            if done // CHECK_EVERY != before // CHECK_EVERY:
                check()

    for size in rounds(inputs):
        if time.monotonic() > deadline:
            print(f"\n{name}: FUZZ_SECONDS={FUZZ_SECONDS:g} spent, stopped at {done} of "
                  f"{inputs} inputs", flush=True)
            return
        settings(max_examples=-(-size // (BATCH * per_draw)), deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))(
            given(st.lists(strategy, min_size=BATCH, max_size=BATCH))(batch))()
        print(f"\n{name}: {done} inputs passed, {check()}", flush=True)


def mutants(body: bytes, seed: int) -> Iterator[bytes]:
    """VARIANTS cheap variants of `body`: one to three byte flips, cuts, insertions of
    random bytes or copies of a slice elsewhere each."""
    rng = random.Random(seed)
    for _ in range(VARIANTS):
        out = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            action = rng.randrange(4)
            if action == 0 and out:
                out[rng.randrange(len(out))] ^= rng.randint(1, 255)
            elif action == 1:
                del out[rng.randint(0, len(out)):]
            elif action == 2:
                at = rng.randint(0, len(out))
                out[at:at] = rng.randbytes(rng.randint(1, 16))
            elif out:
                start = rng.randrange(len(out))
                piece = out[start:start + rng.randint(1, 64)]
                at = rng.randint(0, len(out))
                out[at:at] = piece
        yield bytes(out)


seeds = st.integers(0, 2**32 - 1)


def rounds(inputs: int) -> Iterator[int]:
    while inputs > 0:
        yield min(inputs, ROUND)
        inputs -= ROUND


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    process = Daemon(tmp_path_factory.mktemp("fuzz"), config_overrides={
        "server": {"max_body_bytes": MAX_BODY, "grpc_max_message_bytes": MAX_BODY},
        # Accepted fuzz metrics make series: bounded, so that growth means a leak.
        "exporters": {"prometheus": {"max_series": 5000}},
        # Spans are queued (held), not refused for want of an exporter.
        "queue": {"hold_unexported": True},
        # Tight enough that the limit checks run on most requests.
        "limits": {"max_labels_per_metric": 4, "max_label_value_length": 100,
                   "max_attributes_per_item": 3, "max_attribute_value_length": 64},
    })
    process.start()
    yield process
    process.stop()


def assert_serving(daemon: Daemon) -> None:
    assert daemon.running, daemon.log_tail()
    assert httpx.get(f"{daemon.url}/healthz", timeout=TIMEOUT).status_code == 200
    assert "Traceback" not in daemon.log_tail(100_000), daemon.log_tail()


# --- 1. schemathesis on the native API ------------------------------------------------------


@pytest.mark.timeout(SCHEMA_TIMEOUT + 60)
def test_schemathesis_finds_no_server_error(daemon, tmp_path):
    st_cli = Path(sys.executable).with_name("st")
    run = subprocess.run(
        [str(st_cli), "run", f"{daemon.url}/openapi.json",
         "--checks", "not_a_server_error",
         # The native routes and probes (OTLP is fuzzed below, by message structure).
         "--include-path-regex", "^/(api/|healthz|readyz)",
         "--max-examples", str(SCHEMA_EXAMPLES),
         "--request-timeout", str(TIMEOUT),
         "--suppress-health-check", "all",
         "--seed", os.environ.get("FUZZ_SEED", "1"),
         "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=SCHEMA_TIMEOUT, cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "passed" in run.stdout
    assert_serving(daemon)


# --- 2. hypothesis on OTLP ------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One request: to `signal`'s route (HTTP) or method (gRPC)."""

    signal: str
    body: bytes
    content_type: str
    encoding: str | None = None
    grpc: bool = False


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def deeply_nested_span(depth: int) -> bytes:
    """An ExportTraceServiceRequest whose one span has an attribute nested `depth` arrays deep."""
    value = b"\x18\x01"  # AnyValue.int_value = 1
    for _ in range(depth):
        value = field(5, field(1, value))  # AnyValue.array_value -> ArrayValue.values
    span = ExportTraceServiceRequest().resource_spans.add().scope_spans.add().spans.add(
        trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), name="deep",
        start_time_unix_nano=1, end_time_unix_nano=2,
    ).SerializeToString() + field(9, field(1, b"k") + field(2, value))
    return field(1, field(2, field(2, span)))


text = st.text(max_size=30)
any_values = st.recursive(
    st.one_of(
        text.map(lambda s: AnyValue(string_value=s)),
        st.booleans().map(lambda b: AnyValue(bool_value=b)),
        st.integers(*INT64).map(lambda i: AnyValue(int_value=i)),
        st.floats().map(lambda f: AnyValue(double_value=f)),
        st.binary(max_size=30).map(lambda b: AnyValue(bytes_value=b)),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(
            lambda vs: AnyValue(array_value={"values": vs})),
        st.lists(st.tuples(text, children), max_size=3).map(
            lambda kvs: AnyValue(kvlist_value={"values": [KeyValue(key=k, value=v)
                                                          for k, v in kvs]})),
    ),
    max_leaves=8,
)
# Names that collide once made Prometheus names, or that the collector reserves.
COLLIDING_NAMES = ["clash", "clash_total", "clash.total", "hist", "hist_bucket", "hist_count",
                   "hist.sum", "target_info", "target.info", "flext_collector_x",
                   "flext_service_health_status", "!!!", "日本語", "_", "x" * 300]
COLLIDING_KEYS = ["x.y", "x_y", "x-y", "le", "quantile", "service.name", "job", "k" * 201]
attribute_keys = st.sampled_from(COLLIDING_KEYS) | text
string_arrays = st.lists(st.text(max_size=40), max_size=40).map(
    lambda vs: AnyValue(array_value={"values": [AnyValue(string_value=v) for v in vs]}))
attributes = st.lists(st.builds(KeyValue, key=attribute_keys, value=any_values | string_arrays),
                      max_size=4)
ids = st.one_of(st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=8),
                st.binary(max_size=20))
nanos = st.integers(*UINT64)


@st.composite
def built_traces(draw) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        resource = request.resource_spans.add()
        resource.resource.attributes.extend(draw(attributes))
        for _ in range(draw(st.integers(0, 2))):
            scope = resource.scope_spans.add()
            for _ in range(draw(st.integers(0, 4))):
                span = scope.spans.add(
                    trace_id=draw(ids), span_id=draw(ids), parent_span_id=draw(ids),
                    name=draw(text), kind=draw(st.integers(-3, 9)),
                    start_time_unix_nano=draw(nanos), end_time_unix_nano=draw(nanos),
                )
                span.attributes.extend(draw(attributes))
                for _ in range(draw(st.integers(0, 2))):
                    span.events.add(time_unix_nano=draw(nanos), name=draw(text)).attributes.extend(
                        draw(attributes))
                for _ in range(draw(st.integers(0, 2))):
                    span.links.add(trace_id=draw(ids), span_id=draw(ids))
                span.status.code = draw(st.integers(-1, 5))
    return request


def _points(draw, data, kind: str) -> None:
    for _ in range(draw(st.integers(0, 3))):
        point = data.data_points.add(time_unix_nano=draw(nanos),
                                     start_time_unix_nano=draw(nanos))
        point.attributes.extend(draw(attributes))
        if kind in ("gauge", "sum"):
            if draw(st.booleans()):
                point.as_double = draw(st.floats())
            else:
                point.as_int = draw(st.integers(*INT64))
        elif kind == "histogram":
            if draw(st.integers(0, 3)) == 0:  # valid, and maybe past the bucket limit
                bounds = draw(st.integers(0, 300))
                point.explicit_bounds.extend(float(b) for b in range(bounds))
                point.bucket_counts.extend([1] * (bounds + 1))
                point.count = bounds + 1
                continue
            point.count = draw(st.integers(*UINT64))
            point.sum = draw(st.floats())
            point.bucket_counts.extend(draw(st.lists(st.integers(*UINT64), max_size=5)))
            point.explicit_bounds.extend(draw(st.lists(st.floats(), max_size=5)))
        elif kind == "exponential_histogram":
            point.scale = draw(st.integers(-(2**31), 2**31 - 1))
            point.zero_count = draw(st.integers(*UINT64))
            point.positive.offset = draw(st.integers(-(2**31), 2**31 - 1))
            point.positive.bucket_counts.extend(
                draw(st.lists(st.integers(*UINT64), max_size=5)))
            point.sum = draw(st.floats())
        else:
            point.count = draw(st.integers(*UINT64))
            point.sum = draw(st.floats())
            for _ in range(draw(st.integers(0, 3))):
                point.quantile_values.add(quantile=draw(st.floats()), value=draw(st.floats()))


@st.composite
def built_metrics(draw) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.extend(draw(attributes))
    scope = resource.scope_metrics.add()
    for _ in range(draw(st.integers(0, 4))):
        metric = scope.metrics.add(
            name=draw(st.sampled_from(["fuzz_metric", "fuzz.dotted", "", *COLLIDING_NAMES])
                      | text),
            unit=draw(st.sampled_from(["", "s", "By", "1", "{packets}"]) | text))
        kind = draw(st.sampled_from(["gauge", "sum", "histogram", "exponential_histogram",
                                     "summary"]))
        data = getattr(metric, kind)
        if kind in ("sum", "histogram", "exponential_histogram"):
            data.aggregation_temporality = draw(st.integers(-1, 3))
        if kind == "sum":
            data.is_monotonic = draw(st.booleans())
        _points(draw, data, kind)
    return request


@st.composite
def built_logs(draw) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for _ in range(draw(st.integers(0, 4))):
        record = scope.log_records.add(
            time_unix_nano=draw(nanos), severity_number=draw(st.integers(-1, 30)),
            severity_text=draw(text), trace_id=draw(ids), span_id=draw(ids),
        )
        record.body.CopyFrom(draw(any_values))
        record.attributes.extend(draw(attributes))
    return request


BUILT = {"traces": built_traces(), "metrics": built_metrics(), "logs": built_logs()}

# OTLP/JSON names, so that random objects reach the parser's real paths.
JSON_KEYS = ["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "parentSpanId",
             "name", "kind", "startTimeUnixNano", "endTimeUnixNano", "attributes", "key",
             "value", "stringValue", "intValue", "doubleValue", "boolValue", "bytesValue",
             "arrayValue", "kvlistValue", "values", "resourceMetrics", "scopeMetrics",
             "metrics", "gauge", "sum", "histogram", "dataPoints", "asDouble", "asInt",
             "timeUnixNano", "bucketCounts", "explicitBounds", "resourceLogs", "scopeLogs",
             "logRecords", "body", "severityNumber", "events", "links", "status", "code"]
json_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**70), 2**70), st.sampled_from([2**64, -(2**63) - 1, 10**30, -1, 0]),
    st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1e308, -1e308, -0.0]),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "0x1f", "", "zz", "1e999",
                     "18446744073709551616", "-1", "4bf92f3577b34da6a3ce929d0e0e4736"]),
    text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(JSON_KEYS) | text, children, max_size=4),
    max_leaves=10,
)
DEEP = "__deeply_nested__"


def nodes(document):
    """Every (container, key) in a JSON document."""
    stack = [document]
    while stack:
        node = stack.pop()
        pairs = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in list(pairs):
            yield node, key
            if isinstance(child, dict | list):
                stack.append(child)


@st.composite
def json_case(draw) -> tuple[str, bytes]:
    signal, document = draw(st.sampled_from(JSON_FIXTURES))
    document = copy.deepcopy(document)
    depth = 0
    for _ in range(draw(st.integers(1, 4))):
        where = list(nodes(document))
        if not where:
            break
        container, key = draw(st.sampled_from(where))
        action = draw(st.sampled_from(["replace", "replace", "delete", "nest", "grow"]))
        if action == "replace":
            container[key] = draw(json_values)
        elif action == "delete":
            del container[key]
        elif action == "grow" and isinstance(container[key], list) and container[key]:
            container[key] = container[key] * draw(st.integers(2, 20))
        elif action == "nest":
            container[key] = DEEP
            depth = draw(st.integers(50, 5000))
    body = json.dumps(document).encode()  # orjson stops at 64-bit integers
    if depth:
        opening, closing = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"),
                                                 (b'{"arrayValue":{"values":[', b"]}}")]))
        body = body.replace(f'"{DEEP}"'.encode(), opening * depth + b"1" + closing * depth, 1)
    if draw(st.integers(0, 9)) == 0:
        body = body[: draw(st.integers(0, len(body)))]
    return signal, body


@st.composite
def protobuf_case(draw) -> tuple[str, bytes]:
    origin = draw(st.sampled_from(["fixture", "built", "deep"]))
    if origin == "fixture":
        signal, body = draw(st.sampled_from(PB_FIXTURES))
    elif origin == "built":
        signal = draw(st.sampled_from(SIGNALS))
        body = draw(BUILT[signal]).SerializeToString()
    else:
        signal, body = "traces", deeply_nested_span(draw(st.integers(10, 400)))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "field", "repeat"]))
        if action == "flip" and body:
            at = draw(st.integers(0, len(body) - 1))
            body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1:]
        elif action == "truncate":
            body = body[: draw(st.integers(0, len(body)))]
        elif action == "insert":
            at = draw(st.integers(0, len(body)))
            body = body[:at] + draw(st.binary(min_size=1, max_size=16)) + body[at:]
        elif action == "field":
            number = draw(st.integers(1, 2**29 - 1))
            wire = draw(st.integers(0, 7))
            payload = draw(st.binary(max_size=12))
            if wire == 2:  # a length that may lie
                payload = varint(draw(st.integers(0, 2**32))) + payload
            body += varint(number << 3 | wire) + payload
        elif action == "repeat":
            body = body * draw(st.integers(2, 8))
    return signal, body


EMPTY_MEMBER = {"gzip": gzip.compress(b""), "deflate": zlib.compress(b"")}


@st.composite
def members(draw, body: bytes) -> tuple[str, bytes]:
    """`body` cut in pieces, each compressed on its own, the members concatenated, with
    empty members before, between or after (up to past body.MAX_MEMBERS)."""
    encoding = draw(st.sampled_from(["gzip", "deflate"]))
    compress = gzip.compress if encoding == "gzip" else zlib.compress
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    empty = EMPTY_MEMBER[encoding] * draw(st.sampled_from([0, 1, 10, 999, 1000, 5000]))
    where = draw(st.sampled_from(["before", "after", "between"]))
    parts = [compress(piece) for piece in pieces]
    if where == "between":
        return encoding, empty.join(parts) if len(parts) > 1 else empty + parts[0]
    return encoding, empty + b"".join(parts) if where == "before" else b"".join(parts) + empty


@st.composite
def cases(draw) -> Case:
    if draw(st.booleans()):
        signal, body = draw(protobuf_case())
        content_type = PROTOBUF
    else:
        signal, body = draw(json_case())
        content_type = JSON
    if draw(st.integers(0, 5)) == 0:
        signal = draw(st.sampled_from(SIGNALS))  # another signal's message
    if draw(st.integers(0, 15)) == 0:
        content_type = draw(st.sampled_from(
            [JSON, PROTOBUF, "text/plain", "", "APPLICATION/X-PROTOBUF; proto=x",
             "application/json; charset=utf-16"]))
    if content_type == PROTOBUF and draw(st.integers(0, 2)) == 0:
        return Case(signal, body, content_type, grpc=True)
    encoding = draw(st.sampled_from(
        [None, None, None, "gzip", "deflate", "identity", "x-gzip", "GZIP", "br", "zstd",
         "gzip;q=1", "bogus", "gzip-lies", "gzip-truncated", "huge", "members"]))
    if encoding in ("gzip", "x-gzip", "GZIP"):
        body = gzip.compress(body)
    elif encoding == "deflate":
        body = zlib.compress(body)
    elif encoding == "gzip-lies":
        encoding = "gzip"
    elif encoding == "gzip-truncated":
        encoding = "gzip"
        compressed = gzip.compress(body)
        body = compressed[: draw(st.integers(0, len(compressed) - 1))]
    elif encoding == "members":
        encoding, body = draw(members(body))
    elif encoding == "huge":  # past server.max_body_bytes once inflated
        encoding = "gzip"
        body = gzip.compress(body * (MAX_BODY // max(len(body), 1) + 2), compresslevel=1)
    return Case(signal, body, content_type, encoding)


def send(wire: Wire, channel: grpc.Channel, case: Case) -> str:
    if case.grpc:
        try:
            channel.unary_unary(GRPC_METHODS[case.signal])(case.body, timeout=TIMEOUT)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
        else:
            code, details = grpc.StatusCode.OK, ""
        assert code in GRPC_ANSWERS, (code, details)
        return code.name
    headers = {"Content-Type": case.content_type}
    if case.encoding is not None:
        headers["Content-Encoding"] = case.encoding
    status, text = wire.post(f"/v1/{case.signal}", case.body, headers)
    assert status in HTTP_ANSWERS, (status, text[:500])
    return str(status)


def test_mutated_otlp_gets_no_server_error_crash_hang_or_growth(daemon):
    seen: dict[str, int] = {}
    wire = Wire(daemon.url)
    with grpc.insecure_channel(
        daemon.grpc_target, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        for _ in range(3):  # warm-up: every fixture, every transport
            for signal, body in PB_FIXTURES:
                send(wire, channel, Case(signal, body, PROTOBUF))
                send(wire, channel, Case(signal, body, PROTOBUF, grpc=True))
            for signal, document in JSON_FIXTURES:
                send(wire, channel, Case(signal, orjson.dumps(document), JSON))
        warm = rss_mib(daemon.pid)

        def fuzz(drawn: tuple[Case, int]) -> int:
            case, seed = drawn
            for each in (case, *(replace(case, body=body) for body in mutants(case.body, seed))):
                answer = send(wire, channel, each)
                seen[answer] = seen.get(answer, 0) + 1
            return 1 + VARIANTS

        def flat() -> str:
            assert daemon.running, daemon.log_tail()
            now = rss_mib(daemon.pid)
            assert now - warm < FLAT_RSS_MIB, f"RSS grew from {warm:.0f} to {now:.0f} MiB"
            return f"RSS {now:.0f} MiB, answers {dict(sorted(seen.items()))}"

        fuzz_rounds("otlp fuzz", FUZZ_EXAMPLES, st.tuples(cases(), seeds), fuzz, flat,
                    per_draw=1 + VARIANTS)
    wire.close()
    print(f"\nfuzz: {sum(seen.values())} requests, answers {dict(sorted(seen.items()))}, "
          f"RSS {warm:.0f} MiB after warm-up, {rss_mib(daemon.pid):.0f} MiB at the end")
    assert_serving(daemon)
    flat()
    assert len(seen) >= 3, seen  # the generator reached more than one kind of answer


@pytest.mark.parametrize("depth", [100, 400, 700, 1000, 1023, 5000])
@pytest.mark.parametrize(("opening", "closing"), [
    (b"[", b"]"), (b'{"a":', b"}"), (b'{"arrayValue":{"values":[', b"]}}"),
])
def test_deeply_nested_json_is_refused_or_ignored(daemon, depth, opening, closing):
    """400, or 200 where the nesting is under a field OTLP/JSON ignores (unknown ones)."""
    nested = opening * depth + b"1" + closing * depth
    for signal, body in (
        ("traces", b'{"resourceSpans":' + nested + b"}"),
        ("traces", b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k",'
                   b'"value":' + nested + b"}]}]}]}]}"),
        ("logs", b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":' + nested
                 + b"}]}]}]}"),
    ):
        answer = httpx.post(f"{daemon.url}/v1/{signal}", content=body,
                            headers={"Content-Type": JSON}, timeout=TIMEOUT)
        assert answer.status_code in (200, 400), (depth, answer.status_code, answer.text[:300])
    assert_serving(daemon)


# --- 3. names, types and labels that could break /metrics -----------------------------------


native_names = st.sampled_from(["clash", "clash_total", "hist", "hist_bucket", "hist_sum",
                                "target_info", "target.info", "flext_collector_x",
                                "flext_service_health", "x.y", "x_y", "a:b"])
native_label_names = st.sampled_from(["x.y", "x_y", "a.b.c", "a_b_c", "le", "ok", "k.", "k_"])
colliding_native_items = st.lists(st.fixed_dictionaries(
    {"name": native_names, "type": st.sampled_from(["counter", "gauge", "histogram"]),
     "value": st.integers(0, 5), "service": st.sampled_from(["a", "b"])},
    optional={"labels": st.dictionaries(native_label_names, st.text(max_size=5), max_size=3),
              "buckets": st.integers(0, 300).map(lambda n: list(range(1, n + 1)))},
), min_size=1, max_size=4)
EXPOSITION_ANSWERS = {200, 202, 400, 413, 422, 429, 503}


def exposition_is_valid(daemon: Daemon) -> str:
    answer = httpx.get(f"{daemon.url}/metrics", timeout=TIMEOUT, trust_env=False)
    assert answer.status_code == 200, answer.text[:2000]
    assert exposition_problems(answer.text) == []
    for reason in ("apply_error", "type_conflict", "series_limit"):
        assert total(answer.text, "flext_collector_dropped_items_total", reason=reason) == 0
    return f"/metrics valid ({len(answer.content)} bytes)"


def test_colliding_and_reserved_names_never_break_the_exposition(daemon):
    """Native batches and OTLP requests built from names and labels that collide once
    exposed, reserved names, arrays and wide histograms: never a 5xx, and /metrics stays
    promtool-valid with no series twice and nothing dropped after an answer."""
    seen: dict[int, int] = {}
    wire = Wire(daemon.url)

    def fuzz(body: list[dict[str, Any]] | ExportMetricsServiceRequest) -> int:
        if isinstance(body, list):
            status, text = wire.post("/api/v1/metrics", json.dumps(body).encode(),
                                     {"Content-Type": JSON})
        else:
            status, text = wire.post("/v1/metrics", body.SerializeToString(),
                                     {"Content-Type": PROTOBUF})
        assert status in EXPOSITION_ANSWERS, (status, text[:2000])
        seen[status] = seen.get(status, 0) + 1
        return 1

    fuzz_rounds("colliding names", max(50, FUZZ_EXAMPLES // 4),
                st.one_of(colliding_native_items, built_metrics()), fuzz,
                lambda: exposition_is_valid(daemon))
    wire.close()
    print(f"\ncolliding names: {sum(seen.values())} requests, answers {dict(sorted(seen.items()))}")
    assert_serving(daemon)
    assert {200, 202, 422} <= set(seen), seen


# --- 4. hypothesis on the native API --------------------------------------------------------

NATIVE_ANSWERS = {202, 400, 413, 415, 422, 429, 503}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
huge = st.sampled_from([2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64, 2**64 - 1, 10**30,
                        -(10**30), 2**70, 1.2e29, 1e308, -0.0, 0.5])
scalars = st.one_of(huge, st.integers(-(2**70), 2**70), st.floats(), text, st.booleans(),
                    st.none())
# Names that collide once sanitized or suffixed, and names the collector reserves.
names = st.sampled_from([
    "fuzz_native", "target_info", "flext_collector_fuzz", "flext_service_health_status",
    "x.y", "x_y", "clash", "clash_total", "hist", "hist_bucket", "a:b", "!!!", "日本語", "",
]) | text
label_names = st.sampled_from(["x.y", "x_y", "le", "quantile", "tenant", "job", "instance",
                               "__name__", "a"]) | text
# Times stay within int64 nanoseconds here (their own bounds are tested with the models).
times = st.integers(0, 2**63 - 1) | st.sampled_from(["2024-01-01T00:00:00Z", "x", ""])
attribute_values = scalars | st.lists(scalars, max_size=5)
native_items = {
    "metrics": st.fixed_dictionaries(
        {"name": names, "type": st.sampled_from(["counter", "gauge", "histogram", "x"]),
         "value": scalars, "service": names},
        optional={"labels": st.dictionaries(label_names, text | scalars, max_size=4),
                  "buckets": st.lists(scalars, max_size=4), "instance": text,
                  "timestamp": times}),
    "spans": st.fixed_dictionaries(
        {"trace_id": st.sampled_from([TRACE_ID, "0" * 32, "zz"]),
         "span_id": st.sampled_from(["00f067aa0ba902b7", "0" * 16, "zz"]), "name": text,
         "service": names, "start_time": times, "end_time": times},
        optional={"attributes": st.dictionaries(text, attribute_values, max_size=4),
                  "events": st.lists(st.fixed_dictionaries(
                      {"name": text, "time": times},
                      optional={"attributes": st.dictionaries(text, attribute_values,
                                                              max_size=3)}), max_size=2)}),
    "health": st.fixed_dictionaries(
        {"service": names, "status": st.sampled_from(["healthy", "degraded", "unhealthy", "x"])},
        optional={"checks": st.dictionaries(text, st.fixed_dictionaries(
            {"status": st.sampled_from(["healthy", "unhealthy", "x"])},
            optional={"observed_value": scalars}), max_size=3),
            "ttl_seconds": scalars, "timestamp": times}),
    "alerts": st.fixed_dictionaries(
        {"name": names, "service": names},
        optional={"labels": st.dictionaries(label_names, text, max_size=3),
                  "status": st.sampled_from(["firing", "resolved", "x"]),
                  "starts_at": times, "annotations": st.dictionaries(text, text, max_size=2)}),
}
BAD_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00"]


@st.composite
def native_case(draw) -> tuple[str, bytes, str | None]:
    route = draw(st.sampled_from(list(native_items)))
    items = draw(st.lists(native_items[route], min_size=1, max_size=5))
    body = json.dumps(items if len(items) > 1 or draw(st.booleans()) else items[0]).encode()
    if draw(st.integers(0, 7)) == 0:
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from(BAD_UTF8)) + body[at:]
    encoding = None
    shape = draw(st.sampled_from(["plain", "plain", "gzip", "members"]))
    if shape == "gzip":
        encoding, body = "gzip", gzip.compress(body)
    elif shape == "members":
        encoding, body = draw(members(body))
    return route, body, encoding


def test_native_shapes_get_no_server_error(daemon):
    seen: dict[int, int] = {}
    wire = Wire(daemon.url)

    def fuzz(drawn: tuple[tuple[str, bytes, str | None], int]) -> int:
        (route, body, encoding), seed = drawn
        headers = {"Content-Type": JSON}
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        for each in (body, *mutants(body, seed)):
            status, text = wire.post(f"/api/v1/{route}", each, headers)
            assert status in NATIVE_ANSWERS, (status, text[:500])
            seen[status] = seen.get(status, 0) + 1
        return 1 + VARIANTS

    def alive() -> str:
        assert daemon.running, daemon.log_tail()
        return f"answers {dict(sorted(seen.items()))}"

    fuzz_rounds("native fuzz", FUZZ_EXAMPLES, st.tuples(native_case(), seeds), fuzz, alive,
                per_draw=1 + VARIANTS)
    wire.close()
    print(f"\nnative fuzz: answers {dict(sorted(seen.items()))}")
    assert_serving(daemon)
    assert metrics_ok(daemon)
    assert {202, 400, 422} <= seen.keys(), seen


def metrics_ok(daemon: Daemon) -> bool:
    return httpx.get(f"{daemon.url}/metrics", timeout=TIMEOUT).status_code == 200
