"""Tenant tagging, the processor between a receiver and the queue when authentication is
on: what a request queues carries the tenant its token stands for (`receivers.auth`).

A receiver applies it to a request's validated items, once, before they are queued: a
`flext.tenant` resource attribute on OTLP data and native spans (replacing one a sender
set), a `tenant` label on native metrics, alerts and pushed groups and a `tenant` field in
health reports. With authentication off there is no tenant and nothing is done, so a
request costs what it did.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flext_observability.models.native import TENANT_ATTRIBUTE
from flext_observability.signals import Signal

_OTLP_REQUESTS: dict[Signal, tuple[type[Message], str]] = {
    Signal.SPANS: (ExportTraceServiceRequest, "resource_spans"),
    Signal.METRICS: (ExportMetricsServiceRequest, "resource_metrics"),
    Signal.LOGS: (ExportLogsServiceRequest, "resource_logs"),
}


def tag_resources(resources: Iterable[Any], tenant: str) -> None:
    """Set the `flext.tenant` attribute on every resource, replacing one a sender set."""
    for item in resources:
        attributes = item.resource.attributes
        for index in reversed(range(len(attributes))):
            if attributes[index].key == TENANT_ATTRIBUTE:
                del attributes[index]
        entry = attributes.add()
        entry.key = TENANT_ATTRIBUTE
        entry.value.string_value = tenant


def tag_otlp(signal: Signal, payload: bytes, tenant: str) -> bytes:
    """A serialized OTLP export request with `flext.tenant` on every resource.

    When the payload names no `flext.tenant` (the usual case), the attribute is appended to
    each resource on the wire, without decoding the request: a message field given twice
    is merged into one (the protobuf encoding's rule), so a second `resource` holding only
    the attribute adds it after the sender's. Otherwise the request is decoded, the
    sender's attribute replaced and the request encoded again."""
    if _TENANT_KEY not in payload:
        tagged = _append_to_resources(payload, _tenant_resource(tenant))
        if tagged is not None:
            return tagged
    request_type, field = _OTLP_REQUESTS[signal]
    request = request_type.FromString(payload)
    tag_resources(getattr(request, field), tenant)
    return request.SerializeToString()


_TENANT_KEY = TENANT_ATTRIBUTE.encode()
# The tag of field 1, length-delimited: an export request's resource_spans/_metrics/_logs,
# their `resource`, a Resource's `attributes`, a KeyValue's `key`, an AnyValue's string.
_FIELD_1 = b"\x0a"
_FIELD_2 = b"\x12"  # a KeyValue's `value`


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(tag: bytes, content: bytes) -> bytes:
    return tag + _varint(len(content)) + content


def _tenant_resource(tenant: str) -> bytes:
    """`resource { attributes { key: "flext.tenant" value { string_value: tenant } } }`."""
    value = _delimited(_FIELD_1, tenant.encode())
    pair = _delimited(_FIELD_1, _TENANT_KEY) + _delimited(_FIELD_2, value)
    return _delimited(_FIELD_1, _delimited(_FIELD_1, pair))


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _append_to_resources(payload: bytes, extra: bytes) -> bytes | None:
    """`payload` (an export request) with `extra` appended to each of its field 1 entries;
    None for what this walk does not take (a group, a truncated field)."""
    parts: list[bytes] = []
    pos = 0
    try:
        while pos < len(payload):
            start = pos
            tag, pos = _read_varint(payload, pos)
            wire_type = tag & 7
            if wire_type == 2:
                length, pos = _read_varint(payload, pos)
                end = pos + length
                if end > len(payload):
                    return None
                if tag >> 3 == 1:
                    content = payload[pos:end]
                    parts.append(_delimited(_FIELD_1, content + extra))
                else:
                    parts.append(payload[start:end])
                pos = end
            elif wire_type in (0, 1, 5):
                pos = _read_varint(payload, pos)[1] if wire_type == 0 else (
                    pos + (8 if wire_type == 1 else 4))
                parts.append(payload[start:pos])
            else:
                return None
    except IndexError:
        return None
    return b"".join(parts) if pos == len(payload) else None
