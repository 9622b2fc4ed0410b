"""`exporters.alertmanager`: the Alertmanagers every alert goes to, and how often."""

from __future__ import annotations

from pydantic import Field

from flext_observability.settings import Duration, EndpointUrl, Int, RetryConfig, Section
from flext_observability.tls import TlsClientConfig


class AlertmanagerExporterConfig(Section):
    urls: list[EndpointUrl] = []
    # Native alerts held at once (firing and resolved in the last 15 minutes).
    max_alerts: Int = Field(default=10_000, gt=0)
    resend_interval: Duration = 60.0
    timeout: Duration = 10.0
    retry: RetryConfig = RetryConfig()
    tls: TlsClientConfig = TlsClientConfig()
