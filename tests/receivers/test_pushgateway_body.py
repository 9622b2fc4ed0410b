"""The push API's reading of URLs and bodies, without a process: the grouping key as the
Pushgateway's `splitLabels` reads it, and the fast path of the text parser giving exactly
what prometheus_client's parser gives."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flext_observability.receivers.pushgateway.body import BadBody, fast_families, parse_text
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
