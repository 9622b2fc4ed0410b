"""`FlextObservabilityMasterFactory`: one config, one client, the four services.

`get_global_factory()` is the process-wide one that `flext_monitor_function` uses by
default. It is created on first use from the environment (`FLEXT_OBS_*`) and its client
sends what is left at interpreter exit. Code that wants other settings (tests, tools that
talk to several collectors) builds its own factory and passes it explicitly.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self

from flext_observability.sdk.client import FlextObservabilityClient
from flext_observability.sdk.config import FlextObservabilityConfig, default_config
from flext_observability.sdk.default import default_client
from flext_observability.sdk.services import (
    FlextAlertService,
    FlextHealthService,
    FlextMetricsService,
    FlextTracingService,
)


class FlextObservabilityMasterFactory:
    """Bundles a config, a client and the services; a context manager that closes the client.

    Without a `client`, one is made from `config` (default: the environment).
    """

    def __init__(
        self,
        config: FlextObservabilityConfig | None = None,
        *,
        client: FlextObservabilityClient | None = None,
    ) -> None:
        if client is None:
            client = FlextObservabilityClient(config if config is not None else default_config())
        self.client = client
        self.config = client.config
        self.metrics = FlextMetricsService(client)
        self.tracing = FlextTracingService(client)
        self.alerts = FlextAlertService(client)
        self.health = FlextHealthService(client)

    def flush(self, timeout: float | None = None) -> bool:
        """See `FlextObservabilityClient.flush`."""
        return self.client.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """See `FlextObservabilityClient.close`."""
        return self.client.close(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


_global_factory: FlextObservabilityMasterFactory | None = None
_global_lock = threading.Lock()


def get_global_factory() -> FlextObservabilityMasterFactory:
    """The process-wide factory, created on the first call (thread-safe) from `FLEXT_OBS_*`."""
    global _global_factory
    factory = _global_factory
    if factory is None:
        with _global_lock:
            if _global_factory is None:
                _global_factory = FlextObservabilityMasterFactory(client=default_client())
            factory = _global_factory
    return factory
