"""The metrics hot path against the model: it accepts only what `Metric` accepts, with the
same values, and it does accept the usual requests (else it would not be a hot path)."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from flext_observability.models.wire import (
    METRICS,
    decode_metrics,
    digest,
    from_models,
    pack_digest,
    series_key,
    unpack_digest,
)

GOOD = [
    {"name": "http_requests", "type": "counter", "value": 1, "service": "api"},
    {"name": "http.server.duration", "type": "histogram", "value": 0.2, "service": "api",
     "instance": "a:1", "labels": {"route": "/x", "http.method": "GET", "_": "1"},
     "buckets": [0.1, 0.5, 1], "unit": "s", "description": "d",
     "timestamp": 1_795_773_000_123_456_789},
    {"name": "temp:c", "type": "gauge", "value": -3.5, "service": "s", "labels": {}},
    {"name": "x", "type": "gauge", "value": 1e300, "service": "s", "timestamp": None},
]


def model_items(body: bytes) -> list[dict[str, Any]] | None:
    """What the model makes of a batch body, as the wire fields; None if it refuses it."""
    try:
        models = METRICS.validate_json(body)
    except ValidationError:
        return None
    return [msgspec.to_builtins(item) for item in from_models(models)]


def wire_items(body: bytes) -> list[dict[str, Any]] | None:
    items = decode_metrics(body, batch=True)
    return None if items is None else [msgspec.to_builtins(item) for item in items]


@pytest.mark.parametrize("item", GOOD)
def test_usual_items_take_the_hot_path_with_the_models_values(item):
    body = orjson.dumps([item])
    assert wire_items(body) is not None
    assert wire_items(body) == model_items(body)


def test_a_single_object_decodes_like_a_batch_of_one():
    body = orjson.dumps(GOOD[1])
    [one] = decode_metrics(body, batch=False)
    assert one == decode_metrics(b"[" + body + b"]", batch=True)[0]


BAD = [
    {"name": "1bad", "type": "counter", "value": 1, "service": "s"},
    {"name": "ok", "type": "counter", "value": -1, "service": "s"},
    {"name": "ok", "type": "counter", "value": 1, "service": ""},
    {"name": "ok", "type": "counter", "value": 1, "service": "s", "labels": {"__x": "1"}},
    {"name": "ok", "type": "counter", "value": 1, "service": "s", "labels": {"job": "1"}},
    {"name": "ok", "type": "counter", "value": 1, "service": "s", "labels": {"a-b": "1"}},
    {"name": "ok", "type": "counter", "value": 1, "service": "s",
     "labels": {"x.y": "1", "x_y": "2"}},
    {"name": "ok", "type": "counter", "value": 1, "service": "s",
     "labels": {"a.b": "1", "a_b": "2", "c": "3"}},
    {"name": "ok", "type": "gauge", "value": 1, "service": "s", "buckets": [1]},
    {"name": "ok", "type": "histogram", "value": 1, "service": "s", "buckets": [2, 1]},
    {"name": "ok", "type": "summary", "value": 1, "service": "s"},
    {"name": "ok", "type": "gauge", "value": True, "service": "s"},
    {"name": "ok", "type": "gauge", "value": "1", "service": "s"},
    {"name": "ok", "type": "gauge", "value": 1, "service": "s", "extra": 1},
    {"name": "ok", "type": "gauge", "value": 1, "service": "s", "timestamp": -1},
    {"name": "ok", "type": "gauge", "value": 1, "service": "s", "timestamp": 12},
    {"name": "ok", "type": "gauge", "value": 1, "service": "s", "timestamp": 1_795_773_000_000},
    {"name": "ok", "type": "gauge", "value": 1, "service": "s", "timestamp": 2**64},
    {"name": "ok", "type": "gauge", "service": "s"},
]


@pytest.mark.parametrize("item", BAD)
def test_what_the_model_refuses_the_hot_path_leaves_to_it(item):
    body = json.dumps([item]).encode()  # 2**64 too
    assert model_items(body) is None
    assert wire_items(body) is None


@pytest.mark.parametrize("text", [b'[{"name":"x","type":"gauge","value":NaN,"service":"s"}]',
                                  b'[{"name":"x","type":"gauge","value":1e999,"service":"s"}]'])
def test_non_finite_values_are_left_to_the_model(text):
    assert wire_items(text) is None
    assert model_items(text) is None


KNOWN = {"name": "ok", "type": "counter", "value": 1, "service": "s", "labels": {"a": "1"}}


@pytest.mark.parametrize("item", BAD)
def test_one_bad_item_among_names_seen_valid_is_still_left_to_the_model(item):
    assert wire_items(orjson.dumps([KNOWN])) is not None  # "ok" and "a" are now seen valid
    body = json.dumps([KNOWN, item]).encode()
    assert model_items(body) is None
    assert wire_items(body) is None


@pytest.mark.parametrize("values", [[-3.5, 2], [-1e308, -1e308, 5]])
def test_gauges_under_zero_among_names_seen_valid_take_the_hot_path(values):
    items = [{**KNOWN, "type": "gauge", "value": value} for value in values]
    body = orjson.dumps([KNOWN, *items])
    assert wire_items(body) is not None
    assert wire_items(body) == model_items(body)


def test_rfc3339_timestamps_take_the_models_path_and_come_out_as_nanoseconds():
    body = orjson.dumps([{**GOOD[0], "timestamp": "2026-01-01T00:00:00Z"}])
    assert wire_items(body) is None
    [item] = model_items(body)
    assert item["timestamp"] == 1_767_225_600 * 10**9


@pytest.mark.parametrize("seconds", [1_795_773_000, 1_795_773_000.25])
def test_timestamps_in_seconds_take_the_models_path_and_come_out_as_nanoseconds(seconds):
    body = orjson.dumps([{**GOOD[0], "timestamp": seconds}])
    assert wire_items(body) is None
    [item] = model_items(body)
    assert item["timestamp"] == int(seconds * 4) * 10**9 // 4


def test_a_digest_keeps_families_series_and_values_and_packs_losslessly():
    body = orjson.dumps([GOOD[0], GOOD[0], GOOD[1], {**GOOD[0], "value": 2.5}])
    summary = digest(decode_metrics(body, batch=True))
    assert [(r.name, r.type, r.count) for r in summary.runs] == [
        ("http_requests", "counter", 2), ("http.server.duration", "histogram", 1),
        ("http_requests", "counter", 1)]
    assert summary.runs[1].buckets == [0.1, 0.5, 1]
    assert summary.items == 4
    assert list(summary.numbers()) == [1.0, 1.0, 0.2, 2.5]
    keys = summary.series()
    assert series_key(keys[2]) == ("api", "a:1", {"route": "/x", "http.method": "GET", "_": "1"})
    assert series_key(keys[0]) == ("api", "", {})
    assert unpack_digest(pack_digest(summary)) == summary


def test_newlines_inside_labels_do_not_split_a_series_key():
    body = orjson.dumps([{**GOOD[0], "labels": {"l": "a\nb"}}, GOOD[0]])
    keys = digest(decode_metrics(body, batch=True)).series()
    assert len(keys) == 2
    assert series_key(keys[0])[2] == {"l": "a\nb"}


def mostly(valid: list[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid choices three times in four, so that both paths are exercised."""
    return st.integers(0, 3).flatmap(lambda i: invalid if i == 3 else st.sampled_from(valid))


names = mostly(["a", "a.b", "a:b", "_x", "Z9_:"],
               st.one_of(st.sampled_from(["1a", "a-b", "", "x" * 201, "é"]), st.text(max_size=8)))
# "l.m" and "l_m", "a.b_c" and "a_b.c" are one Prometheus label each: refused together.
label_names = mostly(["l", "l.m", "l_m", "_", "_1", "L_2", "a.b_c", "a_b.c"],
                     st.sampled_from(["__l", "job", "le", "instance", "a-b", "", "é", "1"]))
numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**70), 2**70))
values = st.integers(0, 3).flatmap(
    lambda i: st.one_of(st.booleans(), st.text(max_size=3), st.none()) if i == 3 else numbers
)
metric = st.fixed_dictionaries(
    {"name": names, "type": mostly(["counter", "gauge", "histogram"], st.just("sum")),
     "value": values, "service": mostly(["s", "api"], st.sampled_from(["", "x" * 201]))},
    optional={
        "instance": mostly(["", "i:1"], st.just("x" * 201)),
        "labels": st.dictionaries(label_names, st.text(max_size=4), max_size=3),
        "unit": st.text(max_size=3),
        "buckets": mostly([None, [0.1, 1.0]], st.lists(values, max_size=4)),
        "timestamp": mostly([0, 10**18, 1_795_773_000, 1_795_773_000.5, 2**63 - 1, 2**63, None],
                            st.one_of(values, st.just("2026-01-01T00:00:00Z"))),
    },
)


@settings(max_examples=600, deadline=None)
@given(st.lists(metric, min_size=1, max_size=2))
def test_generated_items_are_never_accepted_by_the_hot_path_alone(items):
    body = json.dumps(items).encode()  # integers past 64 bits too
    fast = wire_items(body)
    if fast is not None:
        expected = model_items(body)
        assert expected is not None, "the hot path accepted what the model refuses"
        assert fast == expected
        assert all(math.isfinite(item["value"]) for item in fast)
