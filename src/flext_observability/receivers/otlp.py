"""OTLP ingestion shared by OTLP/HTTP and OTLP/gRPC, and the OTLP/HTTP routes (CONTRACT §2).

Requests are decoded and validated in one walk over the protobuf objects (models.otlp);
valid items are queued as the request's own bytes when nothing was dropped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import Response

from flext_observability.models.otlp import (
    AttributeLimits,
    OtlpDecodeError,
    OtlpParsed,
    encode_response,
    encode_status,
    parse_logs,
    parse_metrics,
    parse_traces,
)
from flext_observability.pipeline.intake import OTLP_PROTOBUF, Rejected
from flext_observability.pipeline.queue import QueueClosed, QueueFull
from flext_observability.processors.tenant import tag_otlp
from flext_observability.receivers.auth import request_tenant
from flext_observability.receivers.body import media_type
from flext_observability.receivers.config import LimitsConfig
from flext_observability.receivers.toolkit import SPANS_REFUSED, Refusal, read_limited
from flext_observability.routes import OTLP
from flext_observability.signals import OtlpKind, Signal
from flext_observability.telemetry import SelfTelemetry

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# google.rpc.Code values used in Status bodies.
INVALID_ARGUMENT = 3
RESOURCE_EXHAUSTED = 8
UNAVAILABLE = 14
UNIMPLEMENTED = 12


@dataclass(frozen=True, slots=True)
class Accepted:
    accepted: int
    rejected: int
    message: str


class OtlpThrottled(Exception):
    """The queue refused the request; retry after `retry_after` seconds."""

    def __init__(self, exc: QueueFull | QueueClosed) -> None:
        super().__init__(str(exc))
        self.full = isinstance(exc, QueueFull)
        self.retry_after = exc.retry_after


class OtlpIngest:
    """Decode, validate, queue; count everything. Raises OtlpDecodeError / OtlpThrottled.

    Spans and log records past the attribute limits, and metric data points past the label
    limits (their attributes become labels), are rejected like invalid ones, in the partial
    success, and counted with reason `attribute_limit` (`label_limit` for data points).
    """

    def __init__(
        self,
        queue_put: Callable[[Signal, str, bytes, int], Awaitable[Rejected]],
        telemetry: SelfTelemetry,
        accepts_logs: bool,
        *,
        limits: LimitsConfig,
        accepts_spans: bool = True,
    ) -> None:
        self._put = queue_put
        self._telemetry = telemetry
        # Signals no exporter would ever deliver: refused, with why and the key to set.
        self._refused: dict[Signal, str] = {}
        self.set_accepts(spans=accepts_spans, logs=accepts_logs)
        self._parsers: dict[str, Callable[..., OtlpParsed]] = {}
        self.set_limits(limits)

    def set_accepts(self, *, spans: bool, logs: bool) -> None:
        """Which signals an exporter delivers (at start, and from a reloaded config)."""
        refused: dict[Signal, str] = {}
        if not logs:
            refused[Signal.LOGS] = (
                "log records are not accepted: no logs exporter is configured (add an "
                "exporters.otlp entry whose signals include logs)"
            )
        if not spans:
            refused[Signal.SPANS] = SPANS_REFUSED
        self._refused = refused

    def set_limits(self, limits: LimitsConfig) -> None:
        """The item limits of `limits` (at start, and from a reloaded config)."""
        attributes = AttributeLimits(
            limits.max_attributes_per_item, limits.max_attribute_value_length
        )
        labels = AttributeLimits(
            limits.max_labels_per_metric, limits.max_label_value_length,
            "limits.max_labels_per_metric", "limits.max_label_value_length",
            as_text=True, reason="label_limit",
        )
        self._parsers = {
            "traces": partial(parse_traces, limits=attributes),
            "metrics": partial(
                parse_metrics, limits=labels, max_buckets=limits.max_buckets_per_histogram
            ),
            "logs": partial(parse_logs, limits=attributes),
        }

    def count_refused(self, kind: OtlpKind, reason: str) -> None:
        """One request of `kind` refused before it was decoded (its items are unknown)."""
        self._telemetry.refused.labels(OTLP[kind].signal.value, reason).inc()

    async def ingest(
        self, kind: OtlpKind, body: bytes, *, json: bool, receiver: str, tenant: str | None = None
    ) -> Accepted:
        """`tenant` (set when authentication is on) goes on every resource as `flext.tenant`."""
        otlp = OTLP[kind]
        signal = otlp.signal.value
        try:
            parsed = self._parsers[kind](body, json=json)
        except OtlpDecodeError:
            self._telemetry.refused.labels(signal, "malformed").inc()
            raise
        if parsed.rejected > parsed.limited:
            self._telemetry.refused.labels(signal, "invalid").inc(parsed.rejected - parsed.limited)
        for reason, count in parsed.limits.items():
            self._telemetry.refused.labels(signal, reason).inc(count)
        refused = self._refused.get(otlp.signal)
        if refused is not None and parsed.accepted:
            self._telemetry.refused.labels(signal, "no_exporter").inc(parsed.accepted)
            return Accepted(0, parsed.accepted + parsed.rejected, refused)
        if not parsed.accepted:
            return Accepted(0, parsed.rejected, parsed.message)
        payload = parsed.payload
        if tenant is not None:
            payload = tag_otlp(otlp.signal, payload, tenant)
        try:
            admission = await self._put(otlp.signal, OTLP_PROTOBUF, payload, parsed.accepted)
        except (QueueFull, QueueClosed) as exc:
            reason = "queue_full" if isinstance(exc, QueueFull) else exc.reason
            self._telemetry.refused.labels(signal, reason).inc(parsed.accepted)
            raise OtlpThrottled(exc) from None
        for reason, count in admission.reasons.items():
            self._telemetry.refused.labels(signal, reason).inc(count)
        accepted = parsed.accepted - admission.points
        if accepted:
            self._telemetry.received.labels(signal, receiver).inc(accepted)
        message = "; ".join(m for m in (parsed.message, admission.message) if m)
        return Accepted(accepted, parsed.rejected + admission.points, message)


def _status_response(status: int, code: int, message: str, json: bool,
                     headers: dict[str, str] | None = None) -> Response:
    return Response(
        encode_status(code, message, json=json),
        status,
        headers,
        media_type=JSON if json else PROTOBUF,
    )


_SERVICE = {"traces": "Trace", "metrics": "Metrics", "logs": "Logs"}


def _otlp_openapi(kind: str) -> dict[str, object]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    json_body = {"schema": {"type": "object"}}
    return {
        "requestBody": {"required": True, "content": {PROTOBUF: binary, JSON: json_body}},
        "responses": {
            "200": {"description": f"Export{_SERVICE[kind]}ServiceResponse (partial_success)",
                    "content": {PROTOBUF: binary, JSON: json_body}},
            "400": {"description": "not a valid OTLP message (google.rpc.Status)"},
            "413": {"description": "larger than server.max_body_bytes"},
            "415": {"description": "Content-Type is not protobuf or JSON"},
            "429": {"description": "the queue is full; Retry-After"},
            "503": {"description": "not accepting now; Retry-After"},
        },
    }


def build_otlp_router(ingest: OtlpIngest, max_body_bytes: int, read_timeout: float,
                      telemetry: SelfTelemetry) -> APIRouter:
    router = APIRouter(tags=["otlp"])

    def add(kind: OtlpKind) -> None:
        signal = OTLP[kind].signal.value

        async def endpoint(request: Request) -> Response:
            ctype = media_type(request.headers.get("content-type"))
            if ctype not in (PROTOBUF, JSON):
                telemetry.refused.labels(signal, "unsupported_media_type").inc()
                return _status_response(
                    415, INVALID_ARGUMENT,
                    f"unsupported Content-Type {ctype or '(none)'!r}; use {PROTOBUF} or {JSON}",
                    json=True,
                )
            json = ctype == JSON
            try:
                body = await read_limited(request, max_body_bytes, read_timeout)
                answer = await ingest.ingest(
                    kind, body, json=json, receiver="otlp_http",
                    tenant=request_tenant(request.scope),
                )
            except Refusal as refusal:
                telemetry.refused.labels(signal, refusal.reason).inc()
                return _status_response(refusal.status, INVALID_ARGUMENT,
                                        refusal.errors[0].message, json)
            except OtlpDecodeError as exc:
                return _status_response(400, INVALID_ARGUMENT, str(exc), json)
            except OtlpThrottled as exc:
                return _status_response(
                    429 if exc.full else 503,
                    RESOURCE_EXHAUSTED if exc.full else UNAVAILABLE,
                    str(exc), json, {"Retry-After": str(exc.retry_after)},
                )
            return Response(
                encode_response(kind, answer.rejected, answer.message, json=json),
                200,
                media_type=JSON if json else PROTOBUF,
            )

        endpoint.__name__ = f"otlp_{kind}"
        router.add_api_route(
            OTLP[kind].path, endpoint, methods=["POST"], summary=f"OTLP/HTTP {kind}",
            description=f"An OTLP Export{_SERVICE[kind]}ServiceRequest, protobuf or JSON, "
            "optionally gzip- or deflate-encoded. Invalid items are rejected in "
            "`partial_success`; the rest is kept.",
            openapi_extra=_otlp_openapi(kind),
        )

    for kind in OTLP:
        add(kind)
    return router
