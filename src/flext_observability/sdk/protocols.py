"""`FlextObservabilityProtocols`: the shapes of the services, for code that takes one.

A caller that depends on `FlextObservabilityProtocols.MetricsService` rather than on
`FlextMetricsService` can be given a fake in its own tests. Each protocol is
`runtime_checkable` (an `isinstance` check looks at the method names only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from flext_observability.sdk.client import Payload
from flext_observability.sdk.entities import FlextAlert, FlextHealthCheck, FlextMetric, FlextTrace
from flext_observability.sdk.result import FlextResult


class FlextObservabilityProtocols:
    """The seed's async service methods as protocols, and what the client sends."""

    Sendable = Payload

    @runtime_checkable
    class MetricsService(Protocol):
        async def record_metric(
            self, metric: FlextMetric | str, value: float | None = None, unit: str = ""
        ) -> FlextResult[FlextMetric]: ...

        async def collect_metrics(
            self, service: str, metrics_config: Mapping[str, Any]
        ) -> FlextResult[list[FlextMetric]]: ...

    @runtime_checkable
    class TracingService(Protocol):
        async def start_trace(self, trace: FlextTrace | str) -> FlextResult[FlextTrace]: ...

        async def complete_trace(self, trace: FlextTrace) -> FlextResult[FlextTrace]: ...

        async def error_trace(
            self, trace: FlextTrace, message: str
        ) -> FlextResult[FlextTrace]: ...

    @runtime_checkable
    class AlertService(Protocol):
        async def process_alert(self, alert: FlextAlert) -> FlextResult[FlextAlert]: ...

        async def escalate_alert(
            self, alert: FlextAlert, escalation_config: Mapping[str, Any]
        ) -> FlextResult[FlextAlert]: ...

    @runtime_checkable
    class HealthService(Protocol):
        async def execute_health_check(
            self, check: FlextHealthCheck
        ) -> FlextResult[FlextHealthCheck]: ...
