"""The Jaeger exporter: a preset of the OTLP exporter (`exporters.otlp`), spans only.

`exporters.jaeger` keeps its own keys (the ones of an OTLP entry but `name` and `signals`)
and its name, `jaeger`, on its self-metrics and on `/readyz`.
"""

from __future__ import annotations

from flext_observability.exporters.jaeger.config import JaegerExporterConfig
from flext_observability.exporters.otlp.config import OtlpExporterConfig
from flext_observability.exporters.otlp.exporter import OtlpExporter
from flext_observability.pipeline.queue import Queue
from flext_observability.telemetry import SelfTelemetry

NAME = "jaeger"


def jaeger_preset(config: JaegerExporterConfig) -> OtlpExporterConfig:
    """The OTLP entry `exporters.jaeger` stands for: traces to its endpoint."""
    if not config.endpoint:
        raise ValueError("exporters.jaeger.endpoint is not set")
    settings = {key: getattr(config, key) for key in JaegerExporterConfig.model_fields}
    # Validated as a JaegerExporterConfig already; `jaeger` is a name entries may not take.
    return OtlpExporterConfig.model_construct(name=NAME, signals=["traces"], **settings)



def create(
    config: JaegerExporterConfig, queue: Queue, telemetry: SelfTelemetry
) -> OtlpExporter | None:
    """The registry's factory: the preset's OTLP exporter when `endpoint` is set."""
    return OtlpExporter(jaeger_preset(config), queue, telemetry) if config.endpoint else None
