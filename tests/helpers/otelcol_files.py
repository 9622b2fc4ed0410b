"""otelcol as an OTLP sink: each OTLP receiver's traces, metrics and logs written to files.

Every receiver named in ``receivers`` (name -> "grpc" or "http") listens on a free port
for that protocol, with a pipeline per signal in ``signals[name]`` (default all three) to
a file exporter in otelcol's ``proto`` format (each message preceded by its size, 4 bytes
big-endian), appended to, flushed every 100 ms. A receiver without a logs pipeline
answers logs with 404 (HTTP) or UNIMPLEMENTED (gRPC), as otelcol does.
"""

from __future__ import annotations

import struct
from pathlib import Path

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, LogsData
from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from .peers import Otelcol
from .procs import free_ports

SIGNALS = ("traces", "metrics", "logs")
_DATA = {"traces": TracesData, "metrics": MetricsData, "logs": LogsData}


def read_messages(path: Path, kind: str) -> list:
    """The complete messages of one file (a message still being written is left out)."""
    data = path.read_bytes() if path.exists() else b""
    messages, at = [], 0
    while at + 4 <= len(data):
        (size,) = struct.unpack_from(">I", data, at)
        if at + 4 + size > len(data):
            break
        messages.append(_DATA[kind].FromString(data[at + 4:at + 4 + size]))
        at += 4 + size
    return messages


class OtelcolFiles(Otelcol):
    def __init__(self, work_dir: Path, receivers: dict[str, str],
                 signals: dict[str, tuple[str, ...]] | None = None) -> None:
        signals = signals or {}
        ports = free_ports(len(receivers))
        self.endpoints: dict[str, str] = {}
        self.files: dict[tuple[str, str], Path] = {}
        config_receivers, exporters, pipelines = {}, {}, {}
        for (name, protocol), port in zip(receivers.items(), ports, strict=True):
            self.endpoints[name] = f"http://127.0.0.1:{port}"
            config_receivers[f"otlp/{name}"] = {
                "protocols": {protocol: {"endpoint": f"127.0.0.1:{port}"}}
            }
            for signal in signals.get(name, SIGNALS):
                path = work_dir / f"{name}-{signal}.pb"
                self.files[name, signal] = path
                exporters[f"file/{name}_{signal}"] = {
                    "path": str(path), "format": "proto", "append": True,
                    "flush_interval": "100ms",
                }
                pipelines[f"{signal}/{name}"] = {
                    "receivers": [f"otlp/{name}"], "exporters": [f"file/{name}_{signal}"],
                }
        super().__init__(work_dir, {
            "receivers": config_receivers,
            "exporters": exporters,
            "service": {"pipelines": pipelines},
        })

    def messages(self, receiver: str, signal: str) -> list:
        return read_messages(self.files[receiver, signal], signal)

    def spans(self, receiver: str) -> dict[str, tuple[Span, dict]]:
        """Span id (hex) -> (span, its resource's attributes) of every span received."""
        found = {}
        for data in self.messages(receiver, "traces"):
            for resource_spans in data.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found[span.span_id.hex()] = (span, resource)
        return found

    def log_records(self, receiver: str) -> list[tuple[LogRecord, dict]]:
        """(log record, its resource's attributes) of every log record received."""
        return [
            (record, attributes(resource_logs.resource.attributes))
            for data in self.messages(receiver, "logs")
            for resource_logs in data.resource_logs
            for scope_logs in resource_logs.scope_logs
            for record in scope_logs.log_records
        ]

    def metrics(self, receiver: str) -> list[tuple[object, dict]]:
        """(metric, its resource's attributes) of every metric received, in arrival order."""
        return [
            (metric, attributes(resource_metrics.resource.attributes))
            for data in self.messages(receiver, "metrics")
            for resource_metrics in data.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        ]


def value_of(any_value) -> object:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return attributes(any_value.kvlist_value.values)
    return getattr(any_value, kind) if kind else None


def attributes(key_values) -> dict:
    return {kv.key: value_of(kv.value) for kv in key_values}
