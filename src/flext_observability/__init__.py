"""flext-observability: a telemetry collector daemon and the Python SDK that talks to it.

`from flext_observability import ...` gives the SDK (CONTRACT §7, the seed's public API).
Names are imported on first use, so importing this package loads neither the SDK's
dependencies nor the daemon (FastAPI, uvicorn, gRPC).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flext_observability.sdk.client import FlextObservabilityClient
    from flext_observability.sdk.config import FlextObservabilityConfig
    from flext_observability.sdk.constants import FlextObservabilityConstants
    from flext_observability.sdk.entities import (
        FlextAlert,
        FlextHealthCheck,
        FlextLogEntry,
        FlextMetric,
        FlextTrace,
    )
    from flext_observability.sdk.factories import (
        flext_create_alert,
        flext_create_health_check,
        flext_create_log_entry,
        flext_create_metric,
        flext_create_trace,
    )
    from flext_observability.sdk.factory import (
        FlextObservabilityMasterFactory,
        get_global_factory,
    )
    from flext_observability.sdk.monitor import FlextObservabilityMonitor, flext_monitor_function
    from flext_observability.sdk.protocols import FlextObservabilityProtocols
    from flext_observability.sdk.result import FlextResult
    from flext_observability.sdk.services import (
        FlextAlertService,
        FlextHealthService,
        FlextMetricsService,
        FlextObservabilityServices,
        FlextTracingService,
    )
    from flext_observability.sdk.types import FlextObservabilityTypes

_MODULES = {
    "FlextResult": "result",
    "FlextMetric": "entities",
    "FlextTrace": "entities",
    "FlextAlert": "entities",
    "FlextHealthCheck": "entities",
    "FlextLogEntry": "entities",
    "flext_create_metric": "factories",
    "flext_create_trace": "factories",
    "flext_create_alert": "factories",
    "flext_create_health_check": "factories",
    "flext_create_log_entry": "factories",
    "FlextMetricsService": "services",
    "FlextTracingService": "services",
    "FlextAlertService": "services",
    "FlextHealthService": "services",
    "FlextObservabilityServices": "services",
    "FlextObservabilityMasterFactory": "factory",
    "get_global_factory": "factory",
    "FlextObservabilityConfig": "config",
    "flext_monitor_function": "monitor",
    "FlextObservabilityMonitor": "monitor",
    "FlextObservabilityConstants": "constants",
    "FlextObservabilityTypes": "types",
    "FlextObservabilityProtocols": "protocols",
    "FlextObservabilityClient": "client",
}

__all__ = [
    "FlextAlert",
    "FlextAlertService",
    "FlextHealthCheck",
    "FlextHealthService",
    "FlextLogEntry",
    "FlextMetric",
    "FlextMetricsService",
    "FlextObservabilityClient",
    "FlextObservabilityConfig",
    "FlextObservabilityConstants",
    "FlextObservabilityMasterFactory",
    "FlextObservabilityMonitor",
    "FlextObservabilityProtocols",
    "FlextObservabilityServices",
    "FlextObservabilityTypes",
    "FlextResult",
    "FlextTrace",
    "FlextTracingService",
    "flext_create_alert",
    "flext_create_health_check",
    "flext_create_log_entry",
    "flext_create_metric",
    "flext_create_trace",
    "flext_monitor_function",
    "get_global_factory",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'flext_observability' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"flext_observability.sdk.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
