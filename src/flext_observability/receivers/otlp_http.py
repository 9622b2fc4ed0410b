"""The OTLP/HTTP receiver's factory: `POST /v1/{traces,metrics,logs}` (`receivers.otlp`)."""

from __future__ import annotations

from flext_observability.config import Config
from flext_observability.receivers.component import Receiver, ReceiverContext
from flext_observability.receivers.otlp import OtlpIngest, build_otlp_router

NAME = "otlp_http"


def create(config: Config, context: ReceiverContext) -> Receiver:
    """The OTLP/HTTP routes over `context.put`; a reload changes the item limits and which
    signals are taken."""
    ingest = OtlpIngest(context.put, context.telemetry, accepts_logs=config.exports("logs"),
                        limits=config.limits, accepts_spans=config.accepts_spans())
    router = build_otlp_router(ingest, config.server.max_body_bytes, config.server.read_timeout,
                               context.telemetry)
    return Receiver(NAME, router=router, apply=lambda new: apply_to(ingest, new))


def apply_to(ingest: OtlpIngest, config: Config) -> None:
    """A reloaded config's item limits and accepted signals, for OTLP over HTTP or gRPC."""
    ingest.set_limits(config.limits)
    ingest.set_accepts(spans=config.accepts_spans(), logs=config.exports("logs"))
