"""`FlextObservabilityConfig`: how a service's SDK reaches the collector, from `FLEXT_OBS_*`.

The daemon reads `FLEXT_OBS_<SECTION>__<KEY>` from the same environment; this class
ignores every `FLEXT_OBS_*` variable that is not one of its own fields.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, StringConstraints, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger("flext_observability.sdk")

DEFAULT_SERVICE_NAME = "python-service"


def default_service_name() -> str:
    """The running script's name (`worker` for `python worker.py`), else `python-service`."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 in ("", "-c", "-m"):
        return DEFAULT_SERVICE_NAME
    path = Path(argv0)
    name = path.parent.name if path.stem == "__main__" else path.stem
    return name[:200] or DEFAULT_SERVICE_NAME


Seconds = Annotated[float, Field(gt=0)]


class FlextObservabilityConfig(BaseSettings):
    """Settings of the SDK client; every field reads `FLEXT_OBS_<FIELD>` from the environment.

    `endpoint` is the collector's HTTP base URL, `token` its bearer token (when the collector
    has `server.auth.tokens`), `service_name`/`instance` the `job`/`instance` of everything
    sent. The client buffers at most `buffer_limit` items per signal (the oldest are dropped
    beyond that), posts batches of `batch_size` every `flush_interval` seconds (sooner when a
    batch is full), retries throttling and connection errors with backoff capped at
    `max_retry_delay` for at most `max_retry_elapsed` seconds per batch, and at exit spends at
    most `exit_flush_deadline` seconds sending what is left.
    """

    model_config = SettingsConfigDict(env_prefix="FLEXT_OBS_", extra="ignore", frozen=True)

    endpoint: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] = (
        "http://127.0.0.1:4318"
    )
    token: SecretStr | None = None
    service_name: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        default_factory=default_service_name
    )
    instance: Annotated[str, StringConstraints(max_length=200)] = ""
    batch_size: Annotated[int, Field(gt=0, le=10_000)] = 512
    buffer_limit: Annotated[int, Field(gt=0)] = 10_000
    flush_interval: Seconds = 1.0
    timeout: Seconds = 5.0
    max_retry_delay: Seconds = 30.0
    max_retry_elapsed: Seconds = 120.0
    exit_flush_deadline: Annotated[float, Field(ge=0)] = 2.0


def config_from_env() -> FlextObservabilityConfig:
    """The config from the environment; an invalid `FLEXT_OBS_*` value is logged and the
    defaults are used instead: instrumentation must not stop the service it instruments."""
    try:
        return FlextObservabilityConfig()
    except ValidationError as exc:
        log.warning("ignoring invalid FLEXT_OBS_* settings, using the defaults: %s", exc)
        return FlextObservabilityConfig.model_construct()


@functools.cache
def default_config() -> FlextObservabilityConfig:
    """The process's config: `config_from_env()`, read once."""
    return config_from_env()
