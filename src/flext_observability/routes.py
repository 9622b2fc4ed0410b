"""The ingest routes, once: every POST path the collector serves, the signal it carries and
its protocol. The receivers, authentication, the limits, CORS, the SDK client and the CLI
read this table; a new route is a line here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flext_observability.signals import OtlpKind, Signal

NATIVE_PREFIX = "/api/v1/"
OTLP_PREFIX = "/v1/"


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    signal: Signal
    protocol: Literal["native", "otlp"]


def _native(signal: Signal) -> Route:
    return Route(f"{NATIVE_PREFIX}{signal.value}", signal, "native")


def _otlp(kind: OtlpKind, signal: Signal) -> Route:
    return Route(f"{OTLP_PREFIX}{kind}", signal, "otlp")


# The native JSON API (CONTRACT §2, §4), by signal.
NATIVE: dict[Signal, Route] = {
    signal: _native(signal)
    for signal in (Signal.METRICS, Signal.SPANS, Signal.ALERTS, Signal.HEALTH)
}
# OTLP/HTTP, by OTLP's name of the signal.
OTLP: dict[OtlpKind, Route] = {
    "traces": _otlp("traces", Signal.SPANS),
    "metrics": _otlp("metrics", Signal.METRICS),
    "logs": _otlp("logs", Signal.LOGS),
}
# Every ingest route by its path.
INGEST: dict[str, Route] = {route.path: route for route in (*NATIVE.values(), *OTLP.values())}
