"""`tag_otlp` adds `flext.tenant` to each resource on the wire when the sender named none:
the request it gives must decode to what tagging the decoded request gives."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flext_observability.processors.tenant import tag_otlp, tag_resources
from flext_observability.signals import Signal


def _traces() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    first = request.resource_spans.add()
    attribute = first.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", "web"
    first.resource.dropped_attributes_count = 3
    span = first.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "GET /" * 40
    request.resource_spans.add().scope_spans.add().spans.add().name = "no resource"
    return request


def _metrics() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = "m"
    metric.gauge.data_points.add().as_double = 1.5
    return request


def _logs() -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for body in ("a", "b" * 300):
        record = request.resource_logs.add().scope_logs.add().log_records.add()
        record.body.string_value = body
    return request


@pytest.mark.parametrize(("signal", "build"), [
    (Signal.SPANS, _traces), (Signal.METRICS, _metrics), (Signal.LOGS, _logs),
])
@pytest.mark.parametrize("tenant", ["team-a", "équipe-ü" * 20])
def test_the_wire_tag_decodes_as_the_decoded_tag(signal, build, tenant):
    request = build()
    tagged = type(request).FromString(tag_otlp(signal, request.SerializeToString(), tenant))
    field = request.DESCRIPTOR.fields[0].name
    tag_resources(getattr(request, field), tenant)
    assert tagged == request
    assert all(
        [(a.key, a.value.string_value) for a in item.resource.attributes][-1]
        == ("flext.tenant", tenant)
        for item in getattr(tagged, field)
    )


def test_a_tenant_the_sender_set_is_replaced_and_unknown_fields_are_kept():
    request = _traces()
    forged = request.resource_spans[0].resource.attributes.add()
    forged.key, forged.value.string_value = "flext.tenant", "victim"
    # field 99, varint 7: unknown to the export request, kept as it came
    payload = request.SerializeToString() + b"\x98\x06\x07"
    tagged = ExportTraceServiceRequest.FromString(tag_otlp(Signal.SPANS, payload, "team-a"))
    tenants = [[a.value.string_value for a in r.resource.attributes if a.key == "flext.tenant"]
               for r in tagged.resource_spans]
    assert tenants == [["team-a"], ["team-a"]]
    plain = _traces().SerializeToString() + b"\x98\x06\x07"
    assert tag_otlp(Signal.SPANS, plain, "t").endswith(b"\x98\x06\x07")
