"""Requests split by partition for the Kafka queue: a trace stays in one partition, a metric
(so each series) in one partition, and nothing is lost or changed by the split."""

from __future__ import annotations

import secrets

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flext_observability.models.wire import WireMetric, digest, unpack_digest
from flext_observability.pipeline.kafka.partition import (
    partition_of,
    split_digest,
    split_otlp_metrics,
    split_spans,
)


def spans_request(
    traces: int, spans_per_trace: int, resources: int = 2
) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for r in range(resources):
        resource = request.resource_spans.add(schema_url=f"r{r}")
        resource.resource.attributes.add(key="service.name").value.string_value = f"svc{r}"
        scope = resource.scope_spans.add()
        scope.scope.name = f"scope{r}"
        for _ in range(traces):
            trace_id = secrets.token_bytes(16)
            for i in range(spans_per_trace):
                scope.spans.add(trace_id=trace_id, span_id=secrets.token_bytes(8), name=f"s{i}")
    return request


def test_spans_split_by_trace_id_keep_every_span_with_its_resource_and_scope():
    request = spans_request(traces=20, spans_per_trace=3)
    parts = split_spans(request.SerializeToString(), 4)
    assert len(parts) > 1
    seen = {}
    for partition, (payload, items, key) in parts.items():
        part = ExportTraceServiceRequest.FromString(payload)
        spans = [(rs, ss, s) for rs in part.resource_spans for ss in rs.scope_spans
                 for s in ss.spans]
        assert items == len(spans)
        assert partition_of(key, 4) == partition
        for rs, ss, span in spans:
            assert partition_of(span.trace_id, 4) == partition  # a trace in one partition
            service = rs.resource.attributes[0].value.string_value
            assert (rs.schema_url, ss.scope.name) == (f"r{service[-1]}", f"scope{service[-1]}")
            seen[span.span_id] = span
    originals = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert seen == {s.span_id: s for s in originals}


def test_a_request_of_one_partition_is_kept_as_it_is():
    request = spans_request(traces=1, spans_per_trace=5, resources=1)
    payload = request.SerializeToString()
    ((_, (kept, items, _)),) = split_spans(payload, 8).items()
    assert (kept, items) == (payload, 5)


def test_otlp_metrics_split_by_metric_name_count_data_points():
    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add().scope_metrics.add()
    for m in range(12):
        metric = scope.metrics.add(name=f"metric_{m}")
        for v in range(m % 3 + 1):
            metric.gauge.data_points.add(as_double=v)
    parts = split_otlp_metrics(request.SerializeToString(), 3)
    names: dict[str, int] = {}
    for partition, (payload, items, _) in parts.items():
        part = ExportMetricsServiceRequest.FromString(payload)
        metrics = [m for rm in part.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
        assert items == sum(len(m.gauge.data_points) for m in metrics)
        for metric in metrics:
            assert partition_of(metric.name.encode(), 3) == partition
            names[metric.name] = len(metric.gauge.data_points)
    assert names == {f"metric_{m}": m % 3 + 1 for m in range(12)}


def test_native_digest_split_by_metric_name_keeps_series_and_values():
    items = [WireMetric(name=f"n{i % 5}", type="counter" if i % 2 else "gauge", value=float(i),
                        service="s", labels={"i": str(i)}) for i in range(40)]
    whole = digest(items)
    parts = split_digest(whole, 4)
    got = {}
    for partition, (payload, count, _) in parts.items():
        part = unpack_digest(payload)
        assert count == part.items
        start = 0
        for run in part.runs:
            assert partition_of(run.name.encode(), 4) == partition
            for key, value in zip(part.series()[start:start + run.count],
                                  part.numbers()[start:start + run.count], strict=True):
                got[key] = (run.name, run.type, value)
            start += run.count
    expected = {}
    start = 0
    for run in whole.runs:
        for key, value in zip(whole.series()[start:start + run.count],
                              whole.numbers()[start:start + run.count], strict=True):
            expected[key] = (run.name, run.type, value)
        start += run.count
    assert got == expected
