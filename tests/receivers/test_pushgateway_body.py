"""The push API's reading of URLs and bodies, without a process: the grouping key as the
Pushgateway's `splitLabels` reads it, and the fast path of the text parser giving exactly
what prometheus_client's parser gives."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from flext_observability.receivers.pushgateway.body import (
    BadBody,
    fast_families,
    parse_text,
    plain_families,
    read_families,
)
from flext_observability.receivers.pushgateway.path import BadPath, grouping_key
from helpers.pushes import STEPS


@pytest.mark.parametrize(("path", "labels"), [
    ("/metrics/job/j", {"job": "j"}),
    ("/metrics/job/j/a/b/c/d", {"job": "j", "a": "b", "c": "d"}),
    ("/metrics/job/j/a@base64/L3Zhci90bXA", {"job": "j", "a": "/var/tmp"}),
    ("/metrics/job/j/a@base64/=", {"job": "j", "a": ""}),
    ("/metrics/job/j/a@base64/YWI=", {"job": "j", "a": "ab"}),
    ("/metrics/job/j/a@base64/YWI", {"job": "j", "a": "ab"}),
    ("/metrics/job@base64/YS9i", {"job": "a/b"}),
    ("/metrics/job/j/job/other", {"job": "j"}),
])
def test_grouping_keys(path, labels):
    assert grouping_key(path) == labels


@pytest.mark.parametrize(("path", "message"), [
    ("/metrics/job/", "job name is required"),
    ("/metrics/job/j/a", "odd number of components"),
    ("/metrics/job/j/__a/b", "improper label name"),
    ("/metrics/job/j/1a/b", "improper label name"),
    ("/metrics/job/j/a@base64/!!", "invalid base64"),
    ("/metrics/job@base64/!!", "invalid base64"),
])
def test_bad_paths(path, message):
    with pytest.raises(BadPath, match=message):
        grouping_key(path)


BODIES = [body for _, _, body in STEPS] + [
    "# HELP a A help.\n# TYPE a gauge\na{x=\"1\",y=\"2\"} 1e3\na{x=\"2\"} -Inf\n",
    "# comment\n\n  b 1  \n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 2\nh_sum 1\n",
    "# TYPE c counter\nc 1\nc_total 2\nd 3\n# HELP c again\nc 4\n",
    "x{a=\"1\",} 1\ny\t2\n",
]


@pytest.mark.parametrize("body", BODIES)
def test_fast_path_reads_what_prometheus_client_reads(body):
    fast = fast_families(body)
    if fast is None:
        return
    expected = [
        (m.name, m.type, m.documentation,
         [(s.name, tuple(s.labels.items()), s.value, s.timestamp) for s in m.samples])
        for m in text_string_to_metric_families(body)
    ]
    assert fast == expected


def test_fast_path_is_taken_for_plain_bodies():
    assert fast_families(STEPS[0][2]) is not None
    assert fast_families('e{msg="a \\"q\\""} 1\n') is None


def test_group_labels_replace_the_body_labels():
    families = parse_text(b'm{job="x",a="1",b="2"} 1\n', {"job": "j", "a": "g"})
    assert families["m"].samples == [
        ("m", (("a", "g"), ("b", "2"), ("instance", ""), ("job", "j")), 1)
    ]


@pytest.mark.parametrize(("body", "reason"), [
    (b"1x 1\n", "malformed"),
    (b"x 1 17\n", "invalid"),
    (b"x 1\nx 2\n", "invalid"),
    (b'x{__a="1"} 1\n', "malformed"),
    (b"\xff\n", "malformed"),
])
def test_bodies_refused(body, reason):
    with pytest.raises(BadBody) as refused:
        parse_text(body, {"job": "j"})
    assert refused.value.reason == reason


PLAIN_BODIES = [
    *BODIES,
    "# HELP r Requests.\n# TYPE r counter\n" + "".join(f'r{{p="/{i}"}} {i}\n' for i in range(50)),
    "# TYPE r_total counter\nr_total{a=\"1\"} 1.5\nr_total{a=\"2\"} NaN\n",
    "# TYPE g gauge\ng{job=\"body\",instance=\"x\",z=\"#\"} +Inf\ng 0.25\n# TYPE g2 gauge\ng2 -1\n",
    "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n",
    "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 1\ns_count 1\n# HELP u Untyped.\nu 1\n",
    "# TYPE d gauge\nd{a=\"1\",b=\"2\"} 1\nd{b=\"2\",a=\"1\"} 2\n",  # one series twice
    "# TYPE d gauge\nd{job=\"a\"} 1\nd{job=\"b\"} 2\n",  # twice once the group's job replaces
    "# TYPE c counter\nc 1\n\n# TYPE e gauge\ne 1\r\n  e{x=\"1\"} 2\n",
    "# TYPE v gauge\nv 1_000\nv{a=\"1\"} 1 17\n",
    "# TYPE w gauge\nw{a=\"}\"} 1\nw{a=\"x\",} 2\nw{a=\"1\",a=\"2\"} 3\n",
    "# TYPE x gauge\nother 1\n",
    "# TYPE tc gauge\ntc{a=\"1\",} 1\ntc{} 2\ntc{a=\"2\",b=\"3\",} 3e-3\n",
    "# TYPE push_time_seconds gauge\npush_time_seconds 1\n# TYPE y gauge\n",
]


def read_or_refused(text: str) -> object:
    try:
        return read_families(text, {"job": "j", "instance": "i"}, counters_of(text))
    except BadBody as exc:
        return exc.reason


def counters_of(text: str) -> dict[str, str]:
    return {
        line.split()[2].removesuffix("_total"): line.split()[2]
        for line in text.splitlines() if line.startswith("# TYPE") and line.endswith(" counter")
    }


@pytest.mark.parametrize("body", PLAIN_BODIES)
def test_the_block_reader_gives_what_the_line_reader_gives(body):
    """`plain_families` reads a body by blocks; where it takes one, its families (series,
    values, the group's labels) are those `read_families` gives; a body it leaves (a series
    twice, a line of another form) is read, or refused, by `read_families`."""
    plain = plain_families(body, {"job": "j", "instance": "i"})
    if plain is not None:
        assert repr(plain) == repr(read_or_refused(body))  # repr: NaN equal to itself


def test_the_block_reader_takes_the_usual_bodies():
    registry = CollectorRegistry()
    Counter("jobs", "Jobs run.", ["kind"], registry=registry).labels("a").inc()
    Gauge("last_run", "Last run.", registry=registry).set(1.7e9)
    Histogram("took", "Time taken.", registry=registry).observe(0.3)
    for body in (generate_latest(registry).decode(), PLAIN_BODIES[len(BODIES)]):
        assert plain_families(body, {"job": "j"}) is not None
    assert plain_families(PLAIN_BODIES[len(BODIES) + 5], {"job": "j"}) is None
