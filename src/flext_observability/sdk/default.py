"""The process-wide client: made on first use (thread-safe) from the environment
(`FLEXT_OBS_*`). `get_global_factory()` and the services built without a client share it."""

from __future__ import annotations

import threading

from flext_observability.sdk.client import FlextObservabilityClient
from flext_observability.sdk.config import default_config

_client: FlextObservabilityClient | None = None
_lock = threading.Lock()


def default_client() -> FlextObservabilityClient:
    """The process-wide client, created on the first call."""
    global _client
    client = _client
    if client is None:
        with _lock:
            if _client is None:
                _client = FlextObservabilityClient(default_config())
            client = _client
    return client
