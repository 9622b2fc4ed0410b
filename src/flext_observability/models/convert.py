"""Native spans -> OTLP, so that the queue holds one span format and exporters forward it."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from flext_observability.models.native import Span, SpanKind, StatusCode

NATIVE_SCOPE = "flext-observability.native"

_KINDS = {
    SpanKind.INTERNAL: OtlpSpan.SPAN_KIND_INTERNAL,
    SpanKind.SERVER: OtlpSpan.SPAN_KIND_SERVER,
    SpanKind.CLIENT: OtlpSpan.SPAN_KIND_CLIENT,
    SpanKind.PRODUCER: OtlpSpan.SPAN_KIND_PRODUCER,
    SpanKind.CONSUMER: OtlpSpan.SPAN_KIND_CONSUMER,
}
_STATUS = {
    StatusCode.UNSET: Status.STATUS_CODE_UNSET,
    StatusCode.OK: Status.STATUS_CODE_OK,
    StatusCode.ERROR: Status.STATUS_CODE_ERROR,
}


def set_any_value(target: AnyValue, value: object) -> None:
    """Fill an OTLP AnyValue from a str, bool, int, float or a list of those."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, list):
        values = target.array_value.values
        for item in value:
            set_any_value(values.add(), item)
    else:
        target.string_value = str(value)


def add_attributes(
    target: RepeatedCompositeFieldContainer[KeyValue], attributes: Mapping[str, object]
) -> None:
    for key, value in attributes.items():
        entry = target.add()
        entry.key = key
        set_any_value(entry.value, value)


def spans_to_otlp(spans: list[Span]) -> ExportTraceServiceRequest:
    """One ResourceSpans per service (`service.name`), one scope for native spans."""
    request = ExportTraceServiceRequest()
    by_service: dict[str, RepeatedCompositeFieldContainer[OtlpSpan]] = {}
    for span in spans:
        scope_spans = by_service.get(span.service)
        if scope_spans is None:
            resource_spans = request.resource_spans.add()
            add_attributes(resource_spans.resource.attributes, {"service.name": span.service})
            scope = resource_spans.scope_spans.add()
            scope.scope.name = NATIVE_SCOPE
            scope_spans = by_service[span.service] = scope.spans
        out = scope_spans.add()
        out.trace_id = bytes.fromhex(span.trace_id)
        out.span_id = bytes.fromhex(span.span_id)
        if span.parent_span_id:
            out.parent_span_id = bytes.fromhex(span.parent_span_id)
        out.name = span.name
        out.kind = _KINDS[span.kind]
        out.start_time_unix_nano = span.start_time
        out.end_time_unix_nano = span.end_time
        out.status.code = _STATUS[span.status.code]
        out.status.message = span.status.message
        add_attributes(out.attributes, span.attributes)
        for event in span.events:
            otlp_event = out.events.add()
            otlp_event.name = event.name
            otlp_event.time_unix_nano = event.time
            add_attributes(otlp_event.attributes, event.attributes)
    return request
