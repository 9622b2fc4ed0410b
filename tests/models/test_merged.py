"""Spans and log records judged a scope at a time (`cleared_scopes`) must come out exactly
as when every item is walked one by one, for any encoding protobuf accepts: repeated
fields, fields of another wire type, empty and absent ids."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.internal.encoder import _VarintBytes
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from flext_observability.models import otlp
from flext_observability.models.merged import cleared_scopes
from flext_observability.models.otlp import AttributeLimits, OtlpDecodeError, OtlpParsed

TRACE_ID = bytes(range(1, 17))
SPAN_ID = bytes(range(1, 9))
PARENT_ID = bytes(range(2, 10))
LIMITS = AttributeLimits(max_attributes=60, max_value_length=2**20)


def tag(number: int, wire_type: int) -> bytes:
    return _VarintBytes(number << 3 | wire_type)


def delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + _VarintBytes(len(payload)) + payload


def request(resources: list[list[list[bytes]]]) -> bytes:
    """An export request (traces or logs: the same layout) of items as encoded."""
    return b"".join(
        delimited(1, b"".join(
            delimited(2, b"".join(delimited(2, item) for item in scope)) for scope in scopes
        ))
        for scopes in resources
    )


def attributes(count: int, value: str = "v") -> list[KeyValue]:
    return [KeyValue(key=f"k{i}", value={"string_value": value}) for i in range(count)]


def span(**fields: Any) -> bytes:
    values = {"trace_id": TRACE_ID, "span_id": SPAN_ID, "name": "op",
              "start_time_unix_nano": 1, "end_time_unix_nano": 6, **fields}
    return Span(**values).SerializeToString()


def walked(kind: str, body: bytes, limits: AttributeLimits, *, bulk: bool) -> OtlpParsed | str:
    """`parse_traces`/`parse_logs`, with every scope judged as a whole first (`bulk`) or
    none."""
    layout = otlp._LAYOUTS[kind]
    problems = otlp._span_problems if kind == "traces" else otlp._log_problems
    check = otlp._ItemCheck(layout, problems, limits, body, 0 if bulk else None)
    try:
        return otlp._parse(body, layout, False, check)
    except OtlpDecodeError as exc:
        return str(exc)


def cleared(kind: str, body: bytes, scopes: list[tuple[int, int]], max_attributes: int = 60,
            max_value_length: int = 2**20) -> set[tuple[int, int]]:
    return cleared_scopes(kind, body, scopes, max_attributes, max_value_length)


def test_a_common_batch_is_cleared_and_each_defect_sends_its_scope_item_by_item():
    good = [span(attributes=attributes(3)) for _ in range(25)]  # 75 attributes, 60 at most
    assert cleared("spans", request([[good]]), [(0, 0)]) == {(0, 0)}
    defects = [
        span(trace_id=bytes(16)),
        span(trace_id=TRACE_ID[:15]),
        span(span_id=bytes(8)),
        span(parent_span_id=PARENT_ID + b"x"),
        span(links=[Span.Link(trace_id=TRACE_ID, span_id=SPAN_ID)]),
        span(attributes=attributes(61)),
        span(trace_id=TRACE_ID) + delimited(1, b"short"),  # a repeated id
    ]
    for defect in defects:
        body = request([[good], [good, [*good, defect]]])
        assert cleared("spans", body, [(0, 0), (1, 0), (1, 1)]) == {(0, 0), (1, 0)}


def test_absent_empty_and_other_wire_type_ids_are_cleared():
    """The rules let an id be absent; a field of another wire type is read by nobody."""
    items = [span(trace_id=b""), span(parent_span_id=PARENT_ID), span() + tag(2, 0) + b"\x05",
             span() + delimited(9, b"")]
    assert cleared("spans", request([[items]]), [(0, 0)]) == {(0, 0)}


def test_values_are_cleared_when_no_item_is_longer_than_the_limit():
    items = [span(attributes=attributes(1, "x" * 40)) for _ in range(3)]
    body = request([[items]])
    longest = max(map(len, items))
    assert cleared("spans", body, [(0, 0)], max_value_length=longest) == {(0, 0)}
    assert cleared("spans", body, [(0, 0)], max_value_length=longest - 1) == set()
    assert walked("traces", body, AttributeLimits(60, 40), bulk=True).rejected == 0
    assert walked("traces", body, AttributeLimits(60, 39), bulk=True).rejected == 3


def test_log_records_are_cleared_by_their_id_lengths_alone():
    good = LogRecord(trace_id=bytes(16), span_id=SPAN_ID).SerializeToString()
    bad = LogRecord(trace_id=TRACE_ID, span_id=SPAN_ID[:7]).SerializeToString()
    body = request([[[good, good], [good, bad]]])
    assert cleared("log_records", body, [(0, 0), (0, 1)], max_attributes=3) == {(0, 0)}


def test_the_item_by_item_walk_still_finds_what_the_scope_hides():
    """A cleared scope still has its names and times judged span by span."""
    items = [span(), span(name=""), span(start_time_unix_nano=9), span()]
    parsed = walked("traces", request([[items]]), LIMITS, bulk=True)
    assert isinstance(parsed, OtlpParsed)
    assert (parsed.accepted, parsed.rejected) == (2, 2)
    assert "spans[1].name" in parsed.message
    assert "spans[2].endTimeUnixNano" in parsed.message


def occurrence(number: int) -> st.SearchStrategy[bytes]:
    """One more occurrence of a field: well-formed or not, of its wire type or another."""
    ids = [TRACE_ID, SPAN_ID, PARENT_ID, bytes(16), bytes(8), b"", b"x" * 9]
    return st.one_of(
        st.sampled_from(ids).map(lambda value: delimited(number, value)),
        st.integers(0, 300).map(lambda value: tag(number, 0) + _VarintBytes(value)),
        st.binary(min_size=8, max_size=8).map(lambda value: tag(number, 1) + value),
    )


def mostly(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
    """Valid choices three times in four, so that both ways are exercised."""
    return st.integers(0, 3).flatmap(
        lambda i: st.sampled_from(invalid if i == 3 else valid)
    )


span_fields = st.fixed_dictionaries({
    "trace_id": mostly([TRACE_ID], [bytes(16), b"", TRACE_ID[:15], TRACE_ID + b"x"]),
    "span_id": mostly([SPAN_ID], [bytes(8), b"", SPAN_ID[:7]]),
    "parent_span_id": mostly([b"", PARENT_ID], [bytes(8), PARENT_ID + b"x"]),
    "name": mostly(["op"], [""]),
    "start_time_unix_nano": st.sampled_from([0, 1, 6]),
    "end_time_unix_nano": st.sampled_from([0, 6]),
    "attributes": mostly([[], attributes(3)], [attributes(61), attributes(1, "x" * 50)]),
    "links": mostly([[]], [[Span.Link(trace_id=TRACE_ID, span_id=SPAN_ID)],
                          [Span.Link(trace_id=bytes(16), span_id=SPAN_ID)]]),
})
more = st.lists(st.sampled_from([1, 2, 4, 5, 7, 8, 9, 13]).flatmap(occurrence), max_size=2)
spans = st.tuples(span_fields, more).map(
    lambda s: Span(**s[0]).SerializeToString() + b"".join(s[1])
)
log_fields = st.fixed_dictionaries({
    "trace_id": mostly([b"", TRACE_ID, bytes(16)], [TRACE_ID[:15]]),
    "span_id": mostly([b"", SPAN_ID], [SPAN_ID + b"x"]),
    "attributes": mostly([[], attributes(3)], [attributes(61)]),
})
more_logs = st.lists(st.sampled_from([6, 9, 10]).flatmap(occurrence), max_size=2)
logs = st.tuples(log_fields, more_logs).map(
    lambda s: LogRecord(**s[0]).SerializeToString() + b"".join(s[1])
)


def requests(items: st.SearchStrategy[bytes]) -> st.SearchStrategy[list[list[list[bytes]]]]:
    # Up to 24 items a scope: past 60 attributes in all with none past 60 on its own.
    return st.lists(st.lists(st.lists(items, max_size=24), max_size=3), max_size=3)


@pytest.mark.parametrize("limits", [LIMITS, AttributeLimits(60, 45)], ids=["counts", "values"])
@settings(max_examples=200, deadline=None)
@given(resources=requests(spans))
def test_spans_judged_by_scope_come_out_as_walked_one_by_one(limits, resources):
    body = request(resources)
    assert walked("traces", body, limits, bulk=True) == walked("traces", body, limits, bulk=False)


@settings(max_examples=150, deadline=None)
@given(resources=requests(logs))
def test_log_records_judged_by_scope_come_out_as_walked_one_by_one(resources):
    body = request(resources)
    assert walked("logs", body, LIMITS, bulk=True) == walked("logs", body, LIMITS, bulk=False)


def test_only_scopes_of_sixteen_items_or_more_are_judged_as_a_whole(monkeypatch):
    """Under that, the scope-wide judgement costs more than the walk it spares."""
    judged: list[list[tuple[int, int]]] = []

    def spy(kind, body, scopes, *limits):
        judged.append(list(scopes))
        return cleared_scopes(kind, body, scopes, *limits)

    monkeypatch.setattr(otlp, "cleared_scopes", spy)
    body = request([[[span()] * 15, [span()] * 16], [[span()]]])
    parsed = otlp.parse_traces(body, json=False, limits=LIMITS)
    assert (parsed.accepted, judged) == (32, [[(0, 1)]])
    assert otlp.parse_traces(request([[[span()] * 15]]), json=False, limits=LIMITS).accepted == 15
    assert judged == [[(0, 1)]]  # no scope large enough: no scope-wide pass at all
