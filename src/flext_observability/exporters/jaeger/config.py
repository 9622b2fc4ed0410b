"""`exporters.jaeger`: where spans go (OTLP gRPC or HTTP), batching, retry and TLS: the
settings of an `exporters.otlp` entry but its name and signals."""

from __future__ import annotations

from flext_observability.exporters.otlp.config import OtlpDelivery
from flext_observability.settings import EndpointUrl


class JaegerExporterConfig(OtlpDelivery):
    endpoint: EndpointUrl | None = None
