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
    """A serialized OTLP export request with `flext.tenant` on every resource."""
    request_type, field = _OTLP_REQUESTS[signal]
    request = request_type.FromString(payload)
    tag_resources(getattr(request, field), tenant)
    return request.SerializeToString()
