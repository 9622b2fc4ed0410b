"""Golden comparison of OTLP -> Prometheus with the OpenTelemetry Collector.

The same OTLP metrics requests (the fixtures and the cases of ``otlp_metric_cases``) go over
OTLP/HTTP to our collector and to otelcol (otlp receiver -> prometheus exporter, default
settings but ``enable_open_metrics``); both ``/metrics`` are then compared series by series
(names, label sets, values) and family by family (TYPE, HELP, UNIT), in the Prometheus text
format 0.0.4 and in OpenMetrics 1.0.

Every difference found is in golden_known_differences.yaml with its reason (summed up in the
README); the test fails on a new difference and on a listed one that is gone, so the list stays
true. Labels with an empty value count as absent (Prometheus' data model): otelcol writes
otel_scope_version="" and otel_scope_schema_url="" where ours writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml
from exposition_diff import Exposition, differences, parse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from otlp_metric_cases import cases, gauge_metric, number, request

from helpers.exposition import exposition_problems
from helpers.procs import poll

PROTOBUF = {"Content-Type": "application/x-protobuf"}
TEXT = "text/plain;version=0.0.4"
OPENMETRICS = "application/openmetrics-text;version=1.0.0"
SENTINEL = "golden_sentinel"

# Each difference ("<format>: <what>") -> why it is so; kept equal to what the test finds.
KNOWN_FILE = Path(__file__).parent / "golden_known_differences.yaml"
KNOWN_DIFFERENCES: dict[str, str] = {
    line: known["reason"] for known in yaml.safe_load(KNOWN_FILE.read_text())
    for line in known["lines"]
}


def send(url: str, body: ExportMetricsServiceRequest) -> None:
    answer = httpx.post(f"{url}/v1/metrics", content=body.SerializeToString(), headers=PROTOBUF,
                        timeout=10)
    assert answer.status_code == 200, (url, answer.status_code, answer.text)


def scrape(url: str, accept: str) -> Exposition:
    answer = httpx.get(url, headers={"Accept": accept}, timeout=10)
    answer.raise_for_status()
    return parse(answer.text)


def test_otlp_metrics_on_metrics_match_the_opentelemetry_collector(daemon_factory,
                                                                  otelcol_prometheus):
    otelcol = otelcol_prometheus
    daemon = daemon_factory()
    ours_url = f"{daemon.url}/metrics"
    baseline = {fmt: set(scrape(ours_url, fmt).families) for fmt in (TEXT, OPENMETRICS)}

    for requests in cases().values():
        for body in requests:
            send(daemon.url, body)
            send(otelcol.otlp_http_url, body)
    # Both apply requests in order: once the last one shows, every one before it has.
    sentinel = request([gauge_metric("golden.sentinel", "", [number(1)])])
    send(daemon.url, sentinel)
    send(otelcol.otlp_http_url, sentinel)
    for url in (ours_url, otelcol.metrics_url):
        poll(lambda url=url: scrape(url, TEXT), lambda e: any(
            name == SENTINEL for name, _ in e.samples), 20, 0.2, f"{SENTINEL} on {url}")

    # NaN, infinities and scope attribute labels included, ours stays valid for Prometheus.
    ours_text = httpx.get(ours_url, headers={"Accept": TEXT}, timeout=10).text
    assert exposition_problems(ours_text) == []
    assert 'golden_nan_gauge{instance="i-1",job="golden",otel_scope_name="golden.scope"} NaN' \
        in ours_text

    found = []
    # Series in the text format; the families also in OpenMetrics (the same series, but
    # counters' family names without _total, and UNIT).
    for name, fmt in (("text", TEXT), ("openmetrics", OPENMETRICS)):
        ours = scrape(ours_url, fmt).without(baseline[fmt])
        theirs = scrape(otelcol.metrics_url, fmt)
        found += [f"{name}: {difference}"
                  for difference in differences(ours, theirs, series=fmt == TEXT)]

    new = [d for d in found if d not in KNOWN_DIFFERENCES]
    gone = [d for d in KNOWN_DIFFERENCES if d not in found]
    assert (new, gone) == ([], []), (
        "OTLP -> Prometheus differs from the OpenTelemetry Collector.\nNew differences (fix them, "
        "or list them with their reason in golden_known_differences.yaml):\n  "
        + "\n  ".join(new) + "\nListed but gone (remove them from the list):\n  "
        + "\n  ".join(gone))
