"""`exporters.prometheus_remote_write`: where and how the held series are remote-written."""

from __future__ import annotations

import re
from typing import Annotated, Self

from pydantic import AfterValidator, Field, model_validator

from flext_observability.settings import (
    Duration,
    EndpointUrl,
    Int,
    RetryConfig,
    Token,
)
from flext_observability.settings import Section as _Section
from flext_observability.tls import TlsClientConfig

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Headers the exporter sets itself: remote write 1.0 requires these exact values.
RESERVED_HEADERS = frozenset({
    "content-encoding", "content-type", "x-prometheus-remote-write-version",
})


def _external_labels(labels: dict[str, str]) -> dict[str, str]:
    for name in labels:
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError(
                f"'{name}' is not a label name (letters, digits and '_', not starting with a "
                "digit or '__')"
            )
    return labels


def _headers(headers: dict[str, str]) -> dict[str, str]:
    for name in headers:
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header '{name}' is set by the exporter (remote write 1.0)")
    return headers


class BasicAuthConfig(_Section):
    username: str = Field(min_length=1)
    password: str


class PrometheusRemoteWriteConfig(_Section):
    """Off until `url` is set (e.g. `http://prometheus:9090/api/v1/write`)."""

    url: EndpointUrl | None = None
    interval: Duration = 30.0
    headers: Annotated[dict[str, str], AfterValidator(_headers)] = {}
    external_labels: Annotated[dict[str, str], AfterValidator(_external_labels)] = {}
    timeout: Duration = 10.0
    tls: TlsClientConfig = TlsClientConfig()
    basic_auth: BasicAuthConfig | None = None
    bearer_token: Token | None = None
    # Sharding, as Prometheus' queue manager: at most this many samples per request, this
    # many requests at once.
    max_samples_per_request: Int = Field(default=2000, gt=0)
    num_senders: Int = Field(default=5, gt=0, le=64)
    retry: RetryConfig = RetryConfig()

    @model_validator(mode="after")
    def _one_authorization(self) -> Self:
        given = [
            key for key, set_ in (
                ("basic_auth", self.basic_auth is not None),
                ("bearer_token", self.bearer_token is not None),
                ("headers.Authorization", any(h.lower() == "authorization" for h in self.headers)),
            ) if set_
        ]
        if len(given) > 1:
            raise ValueError(f"set only one of {', '.join(given)}")
        return self
