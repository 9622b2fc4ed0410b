"""`exporters.jaeger`: where spans go (OTLP gRPC or HTTP), batching, retry and TLS."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flext_observability.settings import Duration, EndpointUrl, Int, RetryConfig, Section
from flext_observability.tls import TlsClientConfig


class JaegerExporterConfig(Section):
    endpoint: EndpointUrl | None = None
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    headers: dict[str, str] = {}
    compression: Literal["gzip", "none"] = "gzip"
    timeout: Duration = 10.0
    batch_max_items: Int = Field(default=2048, gt=0)
    batch_timeout: Duration = 0.2
    num_senders: Int = Field(default=2, gt=0)
    retry: RetryConfig = RetryConfig()
    tls: TlsClientConfig = TlsClientConfig()

    @model_validator(mode="after")
    def _grpc_always_verifies(self) -> JaegerExporterConfig:
        if self.protocol == "grpc" and self.tls.insecure_skip_verify:
            raise ValueError(
                "tls.insecure_skip_verify is not available with protocol grpc "
                "(grpc always verifies the server); give tls.ca_file instead"
            )
        return self
