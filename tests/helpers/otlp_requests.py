"""OTLP protobuf requests built in tests."""

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def traces_request(*trace_ids: bytes) -> ExportTraceServiceRequest:
    """One resource, one scope, a span per trace id (span ids 1, 2, ...; names s0, s1, ...)."""
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i, trace_id in enumerate(trace_ids):
        span = spans.add()
        span.trace_id = trace_id
        span.span_id = bytes([0, 0, 0, 0, 0, 0, 0, i + 1])
        span.name = f"s{i}"
        span.start_time_unix_nano = 1
        span.end_time_unix_nano = 2
    return request
