"""The exporters' section (`exporters`): one field per exporter, each its own settings
model (`exporters/<name>/config.py`)."""

from __future__ import annotations

from typing import Self

from pydantic import model_validator

from flext_observability.exporters.alertmanager.config import AlertmanagerExporterConfig
from flext_observability.exporters.debug.config import DebugExporterConfig
from flext_observability.exporters.jaeger.config import JaegerExporterConfig
from flext_observability.exporters.otlp.config import OtlpExporters
from flext_observability.exporters.prometheus.config import PrometheusExporterConfig
from flext_observability.exporters.prometheus_remote_write.config import (
    PrometheusRemoteWriteConfig,
)
from flext_observability.settings import Section


class ExportersConfig(Section):
    prometheus: PrometheusExporterConfig = PrometheusExporterConfig()
    jaeger: JaegerExporterConfig = JaegerExporterConfig()
    alertmanager: AlertmanagerExporterConfig = AlertmanagerExporterConfig()
    otlp: OtlpExporters = []
    prometheus_remote_write: PrometheusRemoteWriteConfig = PrometheusRemoteWriteConfig()
    debug: DebugExporterConfig = DebugExporterConfig()

    @model_validator(mode="after")
    def _remote_write_reads_the_store(self) -> Self:
        if self.prometheus_remote_write.url and not self.prometheus.enabled:
            raise ValueError(
                "prometheus_remote_write sends the series the prometheus exporter holds: "
                "it needs prometheus.enabled"
            )
        return self
