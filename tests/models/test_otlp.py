from __future__ import annotations

import json
import math
from pathlib import Path

import orjson
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from flext_observability.models.otlp import (
    AttributeLimits,
    OtlpDecodeError,
    OtlpParsed,
    any_value_text,
    encode_response,
    encode_status,
    parse_logs,
    parse_metrics,
    parse_traces,
)
from helpers.fixtures import OTLP_FIXTURES

FIXTURES = OTLP_FIXTURES
JSON_FIXTURES = sorted(FIXTURES.glob("*.json"))
PB_FIXTURES = sorted((FIXTURES / "pb").glob("*.pb"))

TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")
PARENT_ID = bytes.fromhex("eee19b7ec3c1b173")


def make_span(name: str = "op", **fields) -> Span:
    values = {"trace_id": TRACE_ID, "span_id": SPAN_ID, "name": name}
    values.update(start_time_unix_nano=1, end_time_unix_nano=6)
    values.update(fields)
    return Span(**values)


def traces_body(*spans: Span) -> bytes:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return request.SerializeToString()


def gauge(name: str, *values: float) -> Metric:
    metric = Metric(name=name)
    for value in values:
        metric.gauge.data_points.add(as_double=value, time_unix_nano=7)
    return metric


def delta_sum(name: str, *values: float, monotonic: bool = False) -> Metric:
    metric = Metric(name=name)
    metric.sum.is_monotonic = monotonic
    metric.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    for value in values:
        metric.sum.data_points.add(as_double=value, time_unix_nano=7)
    return metric


def metrics_body(*metrics: Metric) -> bytes:
    request = ExportMetricsServiceRequest()
    request.resource_metrics.add().scope_metrics.add().metrics.extend(metrics)
    return request.SerializeToString()


def logs_body(*records: LogRecord) -> bytes:
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.extend(records)
    return request.SerializeToString()


def spans_of(parsed: OtlpParsed) -> list[Span]:
    request = ExportTraceServiceRequest.FromString(parsed.payload)
    return [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


def test_fixtures_are_there():
    assert len(JSON_FIXTURES) >= 10
    assert len(PB_FIXTURES) >= 6


PARSERS = {
    "resourceSpans": parse_traces,
    "resourceMetrics": parse_metrics,
    "resourceLogs": parse_logs,
}


@pytest.mark.parametrize("path", JSON_FIXTURES, ids=lambda path: path.name)
def test_every_json_fixture_is_accepted(path: Path):
    body = path.read_bytes()
    (top_key,) = json.loads(body)
    parsed = PARSERS[top_key](body, json=True)
    assert parsed.rejected == 0
    assert parsed.message == ""
    twin = FIXTURES / "pb" / f"{path.stem}.pb"
    if twin.exists():  # the hex ids became the same bytes the protobuf version carries
        assert parsed.payload == PARSERS[top_key](twin.read_bytes(), json=False).payload


def pb_parser(path: Path):
    if "metrics" in path.name:
        return parse_metrics
    if "logs" in path.name or "events" in path.name:
        return parse_logs
    return parse_traces


@pytest.mark.parametrize("path", PB_FIXTURES, ids=lambda path: path.name)
def test_every_protobuf_fixture_is_accepted_byte_for_byte(path: Path):
    body = path.read_bytes()
    parsed = pb_parser(path)(body, json=False)
    assert (parsed.rejected, parsed.message) == (0, "")
    assert parsed.accepted > 0
    assert parsed.payload == body


def test_metric_without_data_counts_nothing_and_rejects_nothing():
    body = (FIXTURES / "collector-pdata-pmetric-metricsJSON.json").read_bytes()
    assert parse_metrics(body, json=True) == OtlpParsed(b"", 0, 0, "")
    protobuf = metrics_body(Metric(name="no_data"), gauge("g", 1.0))
    assert parse_metrics(protobuf, json=False) == OtlpParsed(protobuf, 1, 0, "")


@pytest.mark.parametrize("as_json", [False, True], ids=["protobuf", "json"])
def test_one_bad_span_is_rejected_and_the_rest_kept(as_json: bool):
    spans = [make_span("a"), make_span("b", trace_id=bytes(16)), make_span("c")]
    body = traces_body(*spans)
    if as_json:
        body = to_otlp_json(ExportTraceServiceRequest.FromString(body))
    parsed = parse_traces(body, json=as_json)
    assert (parsed.accepted, parsed.rejected) == (2, 1)
    assert parsed.message == (
        "resourceSpans[0].scopeSpans[0].spans[1].traceId: must be 16 bytes and not all zero"
    )
    assert [span.name for span in spans_of(parsed)] == ["a", "c"]


def to_otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON as a client writes it: lowerCamelCase, hex ids."""
    document = {"resourceSpans": []}
    for rs in request.resource_spans:
        scopes = []
        for ss in rs.scope_spans:
            spans = [
                {
                    "traceId": span.trace_id.hex(),
                    "spanId": span.span_id.hex(),
                    "name": span.name,
                    "startTimeUnixNano": str(span.start_time_unix_nano),
                    "endTimeUnixNano": span.end_time_unix_nano,
                }
                for span in ss.spans
            ]
            scopes.append({"spans": spans})
        document["resourceSpans"].append({"scopeSpans": scopes})
    return orjson.dumps(document)


@pytest.mark.parametrize(
    ("span", "problem"),
    [
        (make_span(trace_id=bytes(16)), "traceId: must be 16 bytes and not all zero"),
        (make_span(trace_id=TRACE_ID[:15]), "traceId: must be 16 bytes and not all zero"),
        (make_span(span_id=bytes(8)), "spanId: must be 8 bytes and not all zero"),
        (make_span(span_id=SPAN_ID + b"\x01"), "spanId: must be 8 bytes and not all zero"),
        (make_span(parent_span_id=b"\x01\x02"), "parentSpanId: must be 8 bytes and not all zero"),
        (make_span(name=""), "name: must not be empty"),
        (
            make_span(start_time_unix_nano=10, end_time_unix_nano=9),
            "endTimeUnixNano: must not be before startTimeUnixNano",
        ),
        (
            make_span(links=[Span.Link(trace_id=TRACE_ID, span_id=SPAN_ID), Span.Link()]),
            "links[1].traceId: must be 16 bytes and not all zero",
        ),
        (
            make_span(links=[Span.Link(trace_id=TRACE_ID, span_id=bytes(8))]),
            "links[0].spanId: must be 8 bytes and not all zero",
        ),
    ],
)
def test_span_rules(span: Span, problem: str):
    parsed = parse_traces(traces_body(make_span("ok"), span), json=False)
    assert (parsed.accepted, parsed.rejected) == (1, 1)
    assert parsed.message == f"resourceSpans[0].scopeSpans[0].spans[1].{problem}"


@pytest.mark.parametrize(
    "span",
    [
        make_span(parent_span_id=PARENT_ID),
        make_span(links=[Span.Link(trace_id=TRACE_ID, span_id=PARENT_ID)]),
        make_span(start_time_unix_nano=10, end_time_unix_nano=10),
        # Ids left out altogether are tolerated, as the Collector does (its test data has some).
        Span(name="no ids"),
    ],
    ids=["parent", "link", "zero-duration", "no-ids"],
)
def test_valid_spans_pass_untouched(span: Span):
    body = traces_body(span)
    assert parse_traces(body, json=False) == OtlpParsed(body, 1, 0, "")


def test_many_bad_spans_keep_order_and_summarise_the_message():
    spans = [make_span(f"s{i}", span_id=bytes(8) if i % 5 else SPAN_ID) for i in range(100)]
    parsed = parse_traces(traces_body(*spans), json=False)
    assert (parsed.accepted, parsed.rejected) == (20, 80)
    assert [span.name for span in spans_of(parsed)] == [f"s{i}" for i in range(0, 100, 5)]
    reasons = parsed.message.split("; ")
    assert len(reasons) == 5
    assert (
        reasons[0]
        == "resourceSpans[0].scopeSpans[0].spans[1].spanId: must be 8 bytes and not all zero"
    )
    assert reasons[-1].endswith("must be 8 bytes and not all zero (and 75 more)")


def test_emptied_scopes_and_resources_are_dropped():
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(make_span(name=""))
    kept = request.resource_spans.add()
    kept.scope_spans.add().spans.append(make_span(name=""))
    kept.scope_spans.add().spans.append(make_span("good"))
    parsed = parse_traces(request.SerializeToString(), json=False)
    assert (parsed.accepted, parsed.rejected) == (1, 2)
    result = ExportTraceServiceRequest.FromString(parsed.payload)
    assert len(result.resource_spans) == 1
    assert [len(ss.spans) for ss in result.resource_spans[0].scope_spans] == [1]


def test_all_spans_bad_leaves_an_empty_request():
    parsed = parse_traces(traces_body(make_span(name=""), make_span(name="")), json=False)
    assert parsed == OtlpParsed(
        b"",
        0,
        2,
        "resourceSpans[0].scopeSpans[0].spans[0].name: must not be empty; "
        "resourceSpans[0].scopeSpans[0].spans[1].name: must not be empty",
    )


def test_one_bad_data_point_is_rejected_and_the_rest_kept():
    parsed = parse_metrics(metrics_body(delta_sum("g", 1.0, math.nan, 3.0)), json=False)
    assert (parsed.accepted, parsed.rejected) == (2, 1)
    assert parsed.message == (
        "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[1].asDouble: "
        "a point of a delta sum must be a finite number (it adds to the series' running total)"
    )
    request = ExportMetricsServiceRequest.FromString(parsed.payload)
    points = request.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points
    assert [point.as_double for point in points] == [1.0, 3.0]


def test_nan_and_infinities_of_gauges_and_cumulative_sums_are_values():
    cumulative = monotonic_sum(math.nan)
    cumulative.sum.aggregation_temporality = (
        AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    )
    body = metrics_body(gauge("g", math.nan, math.inf, -math.inf), cumulative)
    parsed = parse_metrics(body, json=False)
    assert (parsed.accepted, parsed.rejected, parsed.payload) == (4, 0, body)


def test_a_delta_sum_refuses_infinities_monotonic_or_not():
    body = metrics_body(delta_sum("d", math.inf), delta_sum("m", -math.inf, 2.0, monotonic=True))
    parsed = parse_metrics(body, json=False)
    assert (parsed.accepted, parsed.rejected) == (1, 2)
    assert "metrics[0].sum.dataPoints[0].asDouble: a point of a delta sum must be a finite" \
        in parsed.message
    assert "metrics[1].sum.dataPoints[0].asDouble: a point of a delta sum must be a finite" \
        in parsed.message


def histogram(**point) -> Metric:
    metric = Metric(name="h", unit="s")
    values = {"count": 3, "sum": 1.5, "explicit_bounds": [1.0, 2.0], "bucket_counts": [1, 1, 1]}
    values.update(point)
    metric.histogram.data_points.add(**values)
    return metric


def summary(**point) -> Metric:
    metric = Metric(name="q")
    metric.summary.data_points.add(**point)
    return metric


def exponential(**point) -> Metric:
    metric = Metric(name="e")
    metric.exponential_histogram.data_points.add(**point)
    return metric


def monotonic_sum(value: float) -> Metric:
    metric = Metric(name="c")
    metric.sum.is_monotonic = True
    metric.sum.data_points.add(as_double=value)
    return metric


@pytest.mark.parametrize(
    ("metric", "problem"),
    [
        (delta_sum("c", math.inf, monotonic=True),
         "sum.dataPoints[0].asDouble: a point of a delta sum must be a finite number"),
        (histogram(bucket_counts=[1, 2]), "histogram.dataPoints[0].bucketCounts: must have one"),
        (histogram(count=4), "histogram.dataPoints[0].count: must equal the sum of bucketCounts"),
        (histogram(explicit_bounds=[2.0, 1.0]), "histogram.dataPoints[0].explicitBounds: must"),
        (histogram(explicit_bounds=[1.0, 1.0]), "histogram.dataPoints[0].explicitBounds: must"),
        (histogram(explicit_bounds=[1.0, math.inf]), "histogram.dataPoints[0].explicitBounds"),
        (histogram(explicit_bounds=[math.nan, 1.0]), "histogram.dataPoints[0].explicitBounds"),
        (histogram(sum=math.nan), "histogram.dataPoints[0].sum: must be a finite number"),
        (histogram(max=math.inf), "histogram.dataPoints[0].max: must be a finite number"),
        (exponential(sum=-math.inf), "exponentialHistogram.dataPoints[0].sum: must be a finite"),
        (summary(sum=math.nan), "summary.dataPoints[0].sum: must be a finite number"),
        (
            summary(quantile_values=[{"quantile": 1.5, "value": 1.0}]),
            "summary.dataPoints[0].quantileValues[0]: quantile must be in [0, 1]",
        ),
    ],
)
def test_data_point_rules(metric: Metric, problem: str):
    parsed = parse_metrics(metrics_body(gauge("ok", 1.0), metric), json=False)
    assert (parsed.accepted, parsed.rejected) == (1, 1)
    assert parsed.message.startswith(f"resourceMetrics[0].scopeMetrics[0].metrics[1].{problem}")
    request = ExportMetricsServiceRequest.FromString(parsed.payload)
    assert [m.name for m in request.resource_metrics[0].scope_metrics[0].metrics] == ["ok"]


@pytest.mark.parametrize(
    "metric",
    [
        histogram(),
        histogram(bucket_counts=[], explicit_bounds=[]),
        histogram(bucket_counts=[], explicit_bounds=[0.5]),
        exponential(count=3, sum=2.0, zero_count=1),
        summary(count=2, sum=3.0, quantile_values=[{"quantile": 0.5, "value": 1.0}]),
        monotonic_sum(0.0),
    ],
    ids=["histogram", "count-only", "bounds-only", "exponential", "summary", "sum"],
)
def test_valid_data_points_pass_untouched(metric: Metric):
    body = metrics_body(metric)
    assert parse_metrics(body, json=False) == OtlpParsed(body, 1, 0, "")


def test_a_metric_without_a_name_rejects_all_its_points_once():
    parsed = parse_metrics(metrics_body(gauge("", 1.0, 2.0), gauge("g", 3.0)), json=False)
    assert (parsed.accepted, parsed.rejected) == (1, 2)
    assert parsed.message == "resourceMetrics[0].scopeMetrics[0].metrics[0].name: must not be empty"


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (LogRecord(trace_id=b"\x01" * 5), "traceId: must be empty or 16 bytes"),
        (LogRecord(trace_id=TRACE_ID, span_id=b"\x01" * 16), "spanId: must be empty or 8 bytes"),
    ],
)
def test_one_bad_log_record_is_rejected_and_the_rest_kept(record: LogRecord, problem: str):
    good = [LogRecord(time_unix_nano=1), LogRecord(trace_id=TRACE_ID, span_id=SPAN_ID)]
    parsed = parse_logs(logs_body(good[0], record, good[1]), json=False)
    assert (parsed.accepted, parsed.rejected) == (2, 1)
    assert parsed.message == f"resourceLogs[0].scopeLogs[0].logRecords[1].{problem}"
    request = ExportLogsServiceRequest.FromString(parsed.payload)
    assert list(request.resource_logs[0].scope_logs[0].log_records) == good


def test_otlp_json_mapping():
    first = {
        "traceId": TRACE_ID.hex().upper(),  # hex is case-insensitive
        "span_id": SPAN_ID.hex(),  # proto field names are accepted too
        "parentSpanId": "",
        "name": "x",
        "kind": "SPAN_KIND_SERVER",  # enum names as well as numbers
        "startTimeUnixNano": 5,  # int64 as number or string
        "endTimeUnixNano": "6",
        "links": [{"traceId": TRACE_ID.hex(), "spanId": PARENT_ID.hex()}],
        "notAField": {"nested": [1]},  # unknown fields are ignored
    }
    second = {"traceId": TRACE_ID.hex(), "spanId": SPAN_ID.hex(), "name": "y", "kind": 3}
    scopes = [{"spans": [first, second]}]
    body = orjson.dumps({"resource_spans": [{"scopeSpans": scopes, "unknown": True}]})
    parsed = parse_traces(body, json=True)
    assert (parsed.accepted, parsed.rejected) == (2, 0)
    first, second = spans_of(parsed)
    assert (first.trace_id, first.span_id, first.parent_span_id) == (TRACE_ID, SPAN_ID, b"")
    assert (first.kind, second.kind) == (Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT)
    assert (first.start_time_unix_nano, first.end_time_unix_nano) == (5, 6)
    assert first.links[0].span_id == PARENT_ID


def test_json_ids_of_log_records_and_exemplars_are_hex():
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": TRACE_ID.hex()}]}]}]}
    request = ExportLogsServiceRequest.FromString(parse_logs(orjson.dumps(logs), json=True).payload)
    assert request.resource_logs[0].scope_logs[0].log_records[0].trace_id == TRACE_ID
    exemplar = {"spanId": SPAN_ID.hex(), "asDouble": 1.0}
    point = {"asDouble": 2.0, "exemplars": [exemplar]}
    metrics = {
        "resourceMetrics": [
            {"scopeMetrics": [{"metrics": [{"name": "g", "sum": {"dataPoints": [point]}}]}]}
        ]
    }
    parsed = parse_metrics(orjson.dumps(metrics), json=True)
    request = ExportMetricsServiceRequest.FromString(parsed.payload)
    metric = request.resource_metrics[0].scope_metrics[0].metrics[0]
    assert metric.sum.data_points[0].exemplars[0].span_id == SPAN_ID


@pytest.mark.parametrize("body", [b"", b"{}", b'{"resourceSpans": []}'])
def test_empty_json_requests_are_valid(body: bytes):
    assert parse_traces(body, json=True) == OtlpParsed(b"", 0, 0, "")


def test_empty_protobuf_request_is_valid():
    assert parse_logs(b"", json=False) == OtlpParsed(b"", 0, 0, "")


SPANS_PATH = "resourceSpans[0].scopeSpans[0].spans[0]"


def json_spans(*spans: dict) -> bytes:
    return orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]})


@pytest.mark.parametrize(
    ("parse", "body", "as_json", "error"),
    [
        (
            parse_traces,
            b"\x0a\xff",
            False,
            "body is not a valid ExportTraceServiceRequest protobuf",
        ),
        (parse_metrics, b"garbage", False, "not a valid ExportMetricsServiceRequest protobuf"),
        (parse_logs, b"\x00", False, "body is not a valid ExportLogsServiceRequest protobuf"),
        (parse_traces, b"{not json", True, "body is not valid JSON"),
        (parse_traces, b"[]", True, "body must be a JSON object"),
        (parse_traces, b'{"resourceSpans": {}}', True, "not a valid OTLP/JSON"),
        (parse_traces, json_spans({"name": 5}), True, "Failed to parse name field"),
        (parse_traces, json_spans({"traceId": "xyz"}), True, f"{SPANS_PATH}.traceId: must be a"),
        (parse_traces, json_spans({"spanId": 12}), True, f"{SPANS_PATH}.spanId: must be a hex"),
        (
            parse_traces,
            json_spans({"links": [{}, {"spanId": "0g"}]}),
            True,
            f"{SPANS_PATH}.links[1].spanId: must be a hex string",
        ),
        (parse_logs, b'{"resourceLogs": [{"scopeLogs": 1}]}', True, "not a valid OTLP/JSON"),
    ],
)
def test_decode_errors(parse, body: bytes, as_json: bool, error: str):
    with pytest.raises(OtlpDecodeError) as raised:
        parse(body, json=as_json)
    assert error in str(raised.value)


def test_deeply_nested_json_is_a_decode_error():
    value = {"intValue": 1}
    for _ in range(60):  # within orjson's depth limit, past json_format's
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    span = {"name": "x", "attributes": [{"key": "a", "value": value}]}
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()
    with pytest.raises(OtlpDecodeError):
        parse_traces(body, json=True)


@pytest.mark.parametrize(
    ("signal", "response_type", "field"),
    [
        ("traces", ExportTraceServiceResponse, "rejected_spans"),
        ("metrics", ExportMetricsServiceResponse, "rejected_data_points"),
        ("logs", ExportLogsServiceResponse, "rejected_log_records"),
    ],
)
def test_encode_response(signal, response_type, field: str):
    assert encode_response(signal, 0, "", json=False) == b""
    assert encode_response(signal, 0, "", json=True) == b"{}"
    response = response_type.FromString(encode_response(signal, 3, "bad ids", json=False))
    assert getattr(response.partial_success, field) == 3
    assert response.partial_success.error_message == "bad ids"
    camel = "".join(word.title() if i else word for i, word in enumerate(field.split("_")))
    assert orjson.loads(encode_response(signal, 3, "bad ids", json=True)) == {
        "partialSuccess": {camel: "3", "errorMessage": "bad ids"}
    }
    warning = response_type.FromString(encode_response(signal, 0, "careful", json=False))
    assert warning.HasField("partial_success")
    assert warning.partial_success.error_message == "careful"


def test_encode_status():
    assert Status.FromString(encode_status(3, "bad body", json=False)) == Status(
        code=3, message="bad body"
    )
    assert orjson.loads(encode_status(8, "slow down", json=True)) == {
        "code": 8,
        "message": "slow down",
    }


LABEL_LIMITS = AttributeLimits(2, 10, "limits.max_labels_per_metric",
                               "limits.max_label_value_length")


def test_data_points_past_the_label_limits_are_rejected_naming_the_key():
    metric = gauge("g", 1.0, 2.0, 3.0, 4.0)
    points = metric.gauge.data_points
    points[1].attributes.add(key="a").value.string_value = "x"
    points[2].attributes.extend(points[1].attributes)
    points[2].attributes.add(key="b").value.int_value = 1
    points[2].attributes.add(key="c").value.bool_value = True
    points[3].attributes.add(key="long").value.string_value = "y" * 11
    parsed = parse_metrics(metrics_body(metric, delta_sum("h", math.inf)), json=False,
                           limits=LABEL_LIMITS)
    assert (parsed.accepted, parsed.rejected, parsed.limited) == (2, 3, 2)
    assert "dataPoints[2].attributes: 3 attributes are more than " \
           "limits.max_labels_per_metric=2" in parsed.message
    assert "dataPoints[3].attributes[0].value: the value of 'long' is longer than " \
           "limits.max_label_value_length=10" in parsed.message
    kept = ExportMetricsServiceRequest.FromString(parsed.payload)
    [only] = kept.resource_metrics[0].scope_metrics[0].metrics
    assert [p.as_double for p in only.gauge.data_points] == [1.0, 2.0]


def test_an_invalid_point_past_a_limit_counts_once_as_invalid():
    metric = delta_sum("g", math.nan)
    for key in "abc":
        metric.sum.data_points[0].attributes.add(key=key).value.string_value = "v"
    parsed = parse_metrics(metrics_body(metric), json=False, limits=LABEL_LIMITS)
    assert (parsed.accepted, parsed.rejected, parsed.limited) == (0, 1, 0)
    assert "finite" in parsed.message


# --- rules for what becomes a Prometheus name or label ---------------------------------------


def _metrics_request(name="m", points=1):
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "s"
    metric = resource.scope_metrics.add().metrics.add(name=name)
    for i in range(points):
        metric.gauge.data_points.add(as_double=i)
    return request, resource, metric


LABELS = AttributeLimits(4, 16, "limits.max_labels_per_metric",
                         "limits.max_label_value_length", as_text=True, reason="label_limit")


def _parse(request, max_buckets=10):
    return parse_metrics(request.SerializeToString(), json=False, limits=LABELS,
                         max_buckets=max_buckets)


@pytest.mark.parametrize(("name", "words"), [
    ("!!!", "no ASCII letter or digit"), ("日本語", "no ASCII letter or digit"),
    ("x" * 256, "longer than 255"),
])
def test_metric_names_without_a_prometheus_form_are_rejected(name, words):
    request, _, _ = _metrics_request(name, points=2)
    parsed = _parse(request)
    assert (parsed.accepted, parsed.rejected, parsed.limited) == (0, 2, 0)
    assert words in parsed.message


def test_array_values_are_held_to_the_label_length_as_their_json():
    request, _, metric = _metrics_request(points=2)
    short = metric.gauge.data_points[0].attributes.add(key="tags")
    short.value.array_value.values.add().string_value = "ab"
    long = metric.gauge.data_points[1].attributes.add(key="tags")
    for _ in range(4):
        long.value.array_value.values.add().string_value = "abc"  # ["abc",...] is 25 long
    parsed = _parse(request)
    assert (parsed.accepted, parsed.rejected, parsed.limits) == (1, 1, {"label_limit": 1})
    assert "dataPoints[1].attributes[0].value" in parsed.message
    assert any_value_text(short.value) == '["ab"]'


def test_resource_attributes_are_target_info_labels_within_the_limits():
    request, resource, _ = _metrics_request(points=3)
    for i in range(5):
        resource.resource.attributes.add(key=f"a{i}").value.string_value = "x"
    parsed = _parse(request)
    assert (parsed.accepted, parsed.rejected, parsed.limits) == (0, 3, {"label_limit": 3})
    assert "labels of target_info" in parsed.message


def test_scope_names_are_label_values_within_the_limit():
    request, resource, _ = _metrics_request()
    resource.scope_metrics[0].scope.name = "n" * 17
    parsed = _parse(request)
    assert parsed.rejected == 1
    assert "scopeMetrics[0].scope.name" in parsed.message


def test_scope_attributes_are_labels_within_the_limits_naming_the_key():
    request, resource, _ = _metrics_request(points=2)
    resource.scope_metrics[0].scope.attributes.add(key="tier").value.string_value = "t" * 17
    parsed = _parse(request)
    assert (parsed.accepted, parsed.rejected, parsed.limits) == (0, 2, {"label_limit": 2})
    assert "scopeMetrics[0].scope.attributes[0].value: the value of 'tier' is longer than " \
           "limits.max_label_value_length=16" in parsed.message


def test_scope_attributes_count_with_each_points_attributes():
    request, resource, metric = _metrics_request(points=2)
    for key in ("a", "b"):
        resource.scope_metrics[0].scope.attributes.add(key=key).value.string_value = "x"
    for key in ("c", "d", "e"):
        metric.gauge.data_points[1].attributes.add(key=key).value.string_value = "y"
    parsed = _parse(request)
    assert (parsed.accepted, parsed.rejected, parsed.limits) == (1, 1, {"label_limit": 1})
    assert "dataPoints[1].attributes: 3 attributes and 2 scope attributes are more than " \
           "limits.max_labels_per_metric=4" in parsed.message
    for key in "fgh":
        resource.scope_metrics[0].scope.attributes.add(key=key).value.string_value = "x"
    parsed = _parse(request)
    assert (parsed.accepted, parsed.rejected) == (0, 2)
    assert "scopeMetrics[0].scope.attributes: 5 attributes are more than " \
           "limits.max_labels_per_metric=4" in parsed.message


def test_negative_delta_counter_points_le_attributes_and_wide_histograms_are_rejected():
    request, resource, _ = _metrics_request()
    metrics = resource.scope_metrics[0].metrics
    delta = metrics.add(name="d").sum
    delta.is_monotonic, delta.aggregation_temporality = True, 1  # DELTA
    delta.data_points.add(as_double=-1)
    delta.data_points.add(as_int=2)
    histogram = metrics.add(name="h").histogram
    histogram.data_points.add(count=1, bucket_counts=[1, 0], explicit_bounds=[1]
                              ).attributes.add(key="le").value.string_value = "1"
    histogram.data_points.add(count=0, explicit_bounds=list(range(11)))
    summary = metrics.add(name="q").summary
    point = summary.data_points.add(count=1)
    point.quantile_values.add(quantile=0.5)
    point.quantile_values.add(quantile=0.5)
    parsed = _parse(request)
    assert (parsed.accepted, parsed.rejected) == (2, 4)
    assert parsed.limits == {"bucket_limit": 1}
    for words in ("must not be negative", "'le'", "max_buckets_per_histogram=10",
                  "given twice"):
        assert words in parsed.message
