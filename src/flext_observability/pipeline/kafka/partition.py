"""Requests split by partition: spans by trace id (a trace stays in one partition), metrics
by metric name (so each series, and every series of a metric, stays in one partition and
is applied in order). A request whose items all map to one partition is kept as it is."""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flext_observability.models.wire import MetricsDigest, Run, pack_digest

# partition -> (payload, items, key)
Parts = dict[int, tuple[bytes, int, bytes]]


def partition_of(key: bytes, partitions: int) -> int:
    return zlib.crc32(key) % partitions


def _points(metric: Any) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0


def split_spans(payload: bytes, partitions: int) -> Parts:
    request = ExportTraceServiceRequest.FromString(payload)
    return _split(payload, request, "resource_spans", "scope_spans", "spans",
                  lambda span: span.trace_id, lambda _span: 1, partitions)


def split_otlp_metrics(payload: bytes, partitions: int) -> Parts:
    request = ExportMetricsServiceRequest.FromString(payload)
    return _split(payload, request, "resource_metrics", "scope_metrics", "metrics",
                  lambda metric: metric.name.encode(), _points, partitions)


@dataclass(slots=True)
class _Part:
    """One partition's share of a request: its resources and scopes by original index."""

    key: bytes
    resources: dict[int, Any] = field(default_factory=dict)
    scopes: dict[tuple[int, int], Any] = field(default_factory=dict)
    items: int = 0


def _split(
    payload: bytes, request: Any, resources: str, scopes: str, leaves: str,
    key: Callable[[Any], bytes], count: Callable[[Any], int], partitions: int,
) -> Parts:
    placed: dict[int, _Part] = {}
    for r_index, resource in enumerate(getattr(request, resources)):
        for s_index, scope in enumerate(getattr(resource, scopes)):
            for leaf in getattr(scope, leaves):
                leaf_key = key(leaf)
                p = partition_of(leaf_key, partitions)
                part = placed.get(p)
                if part is None:
                    part = placed[p] = _Part(leaf_key)
                target = part.scopes.get((r_index, s_index))
                if target is None:
                    new_resource = part.resources.get(r_index)
                    if new_resource is None:
                        new_resource = part.resources[r_index] = type(resource)(
                            resource=resource.resource, schema_url=resource.schema_url
                        )
                    target = getattr(new_resource, scopes).add(
                        scope=scope.scope, schema_url=scope.schema_url
                    )
                    part.scopes[(r_index, s_index)] = target
                getattr(target, leaves).add().CopyFrom(leaf)
                part.items += count(leaf)
    if len(placed) == 1:
        (p, part), = placed.items()
        return {p: (payload, part.items, part.key)}
    parts: Parts = {}
    for p, part in placed.items():
        part_request = type(request)()
        getattr(part_request, resources).extend(
            part.resources[i] for i in sorted(part.resources)
        )
        parts[p] = (part_request.SerializeToString(), part.items, part.key)
    return parts


def split_digest(metrics: MetricsDigest, partitions: int) -> Parts:
    """A native metrics digest by run (one metric name each), packed per partition."""
    series = metrics.series()
    values = metrics.numbers()
    grouped: dict[int, tuple[list[Run], list[bytes], array[float], bytes]] = {}
    start = 0
    for run in metrics.runs:
        end = start + run.count
        name = run.name.encode()
        p = partition_of(name, partitions)
        part = grouped.setdefault(p, ([], [], array("d"), name))
        part[0].append(run)
        part[1].extend(series[start:end])
        part[2].extend(values[start:end])
        start = end
    return {
        p: (pack_digest(MetricsDigest(runs, b"\n".join(keys), numbers.tobytes())),
            len(keys), name)
        for p, (runs, keys, numbers, name) in grouped.items()
    }
