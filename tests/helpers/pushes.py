"""The pushes the push API tests send to the Pushgateway and to the collector alike."""

from __future__ import annotations

# (method, path after /metrics/job, body): pushed in order to both.
STEPS: list[tuple[str, str, str]] = [
    # prometheus_client's text: a counter as foo_total, a gauge, a histogram
    ("PUT", "/j1/instance/i1",
     "# HELP foo_total Foo.\n# TYPE foo_total counter\nfoo_total{path=\"/a\"} 3\n"
     "# TYPE g gauge\ng 1.5\n# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\n"
     "h_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n"),
    # POST replaces g only, adds g2
    ("POST", "/j1/instance/i1", "# TYPE g gauge\ng 7\n# TYPE g2 gauge\ng2{k=\"v\"} 2\n"),
    # a counter pushed as a gauge by another group: refused
    ("PUT", "/j2", "# TYPE foo_total gauge\nfoo_total 1\n"),
    # a hand-written counter without _total, then the same name as a gauge
    ("PUT", "/j3", "# TYPE c counter\nc{x=\"1\"} 4\n"),
    ("PUT", "/j9", "# TYPE c gauge\nc 1\n"),
    # grouping keys in base64: '/' in a value, an empty value, padding optional, the job
    ("PUT", "/j4/path@base64/L3Zhci90bXA", "# TYPE d gauge\nd 1\n"),
    ("PUT", "/j4/path@base64/=", "# TYPE d gauge\nd 2\n"),
    ("PUT", "/j4/path@base64/YWI=", "# TYPE d gauge\nd 3\n"),
    ("PUT", "/j4/path@base64/YWJj", "# TYPE d gauge\nd 4\n"),
    ("PUT", "@base64/YS9i", "# TYPE d gauge\nd 5\n"),
    # the body's job and grouping labels are replaced by the group's
    ("PUT", "/j5/x/y", "m{job=\"other\",x=\"z\",y=\"w\"} 1\n"),
    # refused: timestamps, a series twice, a bad name, a reserved label, bad paths
    ("PUT", "/j6", "t 1 1700000000000\n"),
    ("PUT", "/j6", "t 1\nt 2\n"),
    ("PUT", "/j6", "1t 1\n"),
    ("PUT", "/j6", "t{__x=\"1\"} 1\n"),
    ("PUT", "/j6/__x/y", "t 1\n"),
    ("PUT", "/j6/x", "t 1\n"),
    ("PUT", "/j6/x@base64/!!", "t 1\n"),
    # PUT replaces the whole group (g, g2 and h go)
    ("PUT", "/j1/instance/i1", "# TYPE foo_total counter\nfoo_total{path=\"/a\"} 5\n"),
    # the same group may change a metric's type with PUT
    ("PUT", "/j8", "# TYPE t gauge\nt 1\n"),
    ("PUT", "/j8", "# TYPE t counter\nt_total 2\n"),
    # escaping, NaN and infinities, a summary, an empty body
    ("PUT", "/j7", "e{msg=\"a \\\"q\\\" \\\\ \\n\"} 1\nn NaN\ni +Inf\n"
     "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 3\n"),
    ("PUT", "/j10", ""),
    # DELETE: a group, a group that does not exist
    ("DELETE", "/j2", ""),
    ("DELETE", "/nope", ""),
    ("DELETE", "/j5/x/y", ""),
]
