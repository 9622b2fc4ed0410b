"""OTLP/JSON bodies for tests, written as the specification says."""

from __future__ import annotations

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON of a traces request: lowerCamelCase, ids in hex (not protobuf's base64)."""
    document = json_format.MessageToDict(request)
    for rs, rs_doc in zip(request.resource_spans, document["resourceSpans"], strict=True):
        for ss, ss_doc in zip(rs.scope_spans, rs_doc["scopeSpans"], strict=True):
            for span, span_doc in zip(ss.spans, ss_doc["spans"], strict=True):
                span_doc["traceId"] = span.trace_id.hex()
                span_doc["spanId"] = span.span_id.hex()
    return orjson.dumps(document)
