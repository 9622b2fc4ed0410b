"""The native JSON API: `POST /api/v1/{metrics,spans,alerts,health}` (CONTRACT §2, §4).

A request is all-or-nothing: every item is validated, then the whole request is written
to the queue as one row, and only then answered 202.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter, ValidationError

from flext_observability.models.convert import spans_to_otlp
from flext_observability.models.errors import ItemError, item_errors
from flext_observability.models.native import (
    Alert,
    FieldError,
    HealthReport,
    Metric,
    Span,
    metric_rules,
    wire_schema,
)
from flext_observability.pipeline.queue import QueueClosed, QueueFull, Signal
from flext_observability.receivers.body import (
    BadEncoding,
    BodyTooLarge,
    UnsupportedEncoding,
    media_type,
    read_body,
)
from flext_observability.telemetry import SelfTelemetry

NATIVE_JSON = "native-json"
OTLP_PROTOBUF = "otlp-pb"
RECEIVER = "native"

Admit = Callable[[list[Any]], list[ItemError]]


class Refusal(Exception):
    """A request answered with an error status; nothing from it was kept."""

    def __init__(
        self,
        status: int,
        reason: str,
        errors: list[ItemError],
        items: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.errors = errors
        self.items = items
        self.headers = headers or {}

    @classmethod
    def single(cls, status: int, reason: str, message: str, **kwargs: Any) -> Refusal:
        return cls(status, reason, [ItemError(None, "", message)], **kwargs)


def queue_refusal(exc: QueueFull | QueueClosed, items: int) -> Refusal:
    """QueueFull -> 429, a closed or failed queue -> 503; both with Retry-After."""
    if isinstance(exc, QueueFull):
        return Refusal.single(
            429, "queue_full", str(exc), items=items,
            headers={"Retry-After": str(exc.retry_after)},
        )
    return Refusal.single(
        503, "unavailable", str(exc), items=items, headers={"Retry-After": "5"}
    )


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, decompressed, refusing anything past `limit` bytes (413)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refusal.single(413, "too_large", f"body is larger than {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refusal.single(413, "too_large", f"body is larger than {limit} bytes")
        chunks.append(chunk)
    try:
        return read_body(b"".join(chunks), request.headers.get("content-encoding"), limit)
    except BodyTooLarge:
        raise Refusal.single(
            413, "too_large", f"body is larger than {limit} bytes after decompression"
        ) from None
    except BadEncoding as exc:
        status = 415 if isinstance(exc, UnsupportedEncoding) else 400
        raise Refusal.single(status, "bad_encoding", str(exc)) from None


@dataclass(frozen=True, slots=True)
class _Route:
    """How one route validates: `one`/`many` parse a body; `full` lists every error."""

    signal: Signal
    model: type[BaseModel]
    one: TypeAdapter[Any]
    many: TypeAdapter[Any]
    full: TypeAdapter[Any]


def _route(signal: Signal, model: type[BaseModel]) -> _Route:
    many = TypeAdapter(list[model])  # type: ignore[valid-type]
    return _Route(signal, model, TypeAdapter(model), many, many)


def _wire_route(signal: Signal, model: type[BaseModel]) -> _Route:
    """Validated into plain dicts, with no Python per item (metrics: the hot path)."""
    schema = wire_schema(model)
    return _Route(
        signal, model, TypeAdapter(schema), TypeAdapter(list[schema]),
        TypeAdapter(list[model]),  # type: ignore[valid-type]
    )


ROUTES = {
    "metrics": _wire_route(Signal.METRICS, Metric),
    "spans": _route(Signal.SPANS, Span),
    "alerts": _route(Signal.ALERTS, Alert),
    "health": _route(Signal.HEALTH, HealthReport),
}


class NativeReceiver:
    """Validates native requests and queues them; the routes only translate to HTTP."""

    def __init__(
        self,
        queue_put: Callable[..., Any],
        telemetry: SelfTelemetry,
        max_body_bytes: int,
        max_items: int,
        admit_metrics: Admit,
    ) -> None:
        self._put = queue_put
        self._telemetry = telemetry
        self._max_body = max_body_bytes
        self._max_items = max_items
        self._admit_metrics = admit_metrics

    def _validate(self, route: _Route, body: bytes) -> tuple[list[Any], bool]:
        start = body.lstrip()[:1]
        if start not in (b"{", b"["):
            if not start:
                raise Refusal.single(400, "malformed", "body is empty; send a JSON object or array")
            raise Refusal.single(400, "malformed", "body is not a JSON object or array")
        batch = start == b"["
        try:
            parsed = (route.many if batch else route.one).validate_json(body)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                detail = exc.errors()[0]["msg"]
                message = f"body is not valid JSON: {detail}"
                raise Refusal.single(400, "malformed", message) from None
            raise self._invalid(route, body, batch, exc) from None
        items = parsed if batch else [parsed]
        if not items:
            raise Refusal.single(422, "invalid", "the batch is empty", items=0)
        if len(items) > self._max_items:
            raise Refusal.single(
                413, "too_many_items",
                f"the batch has {len(items)} items; server.max_items_per_request is "
                f"{self._max_items}",
                items=len(items),
            )
        return items, batch

    @staticmethod
    def _invalid(route: _Route, body: bytes, batch: bool, exc: ValidationError) -> Refusal:
        """422 listing every bad item; a wire route re-checks with the full model (the slow
        path, refusals only) so that the rules across fields are listed too."""
        items = _count_items(body, batch)
        if route.full is not route.many:
            try:
                route.full.validate_json(body if batch else b"[" + body + b"]")
            except ValidationError as full:
                return Refusal(422, "invalid", item_errors(full, batch=True), items=items)
        return Refusal(422, "invalid", item_errors(exc, batch), items=items)

    async def ingest(self, kind: str, request: Request) -> int:
        route = ROUTES[kind]
        if media_type(request.headers.get("content-type")) != "application/json":
            raise Refusal.single(
                415, "unsupported_media_type", "Content-Type must be application/json"
            )
        body = await read_limited(request, self._max_body)
        items, _ = self._validate(route, body)
        decoded = None
        if route.signal is Signal.METRICS:
            errors = _metric_rule_errors(items)
            if errors:
                raise Refusal(422, "invalid", errors, items=len(items))
            errors = self._admit_metrics(items)
            if errors:
                raise Refusal(422, "series_limit", errors, items=len(items))
            encoding, payload, decoded = NATIVE_JSON, body, items
        elif route.signal is Signal.SPANS:
            encoding, payload = OTLP_PROTOBUF, spans_to_otlp(items).SerializeToString()
        else:
            encoding = NATIVE_JSON
            payload = orjson.dumps([item.model_dump(mode="json") for item in items])
        try:
            await self._put(route.signal, encoding, payload, len(items), decoded)
        except (QueueFull, QueueClosed) as exc:
            raise queue_refusal(exc, len(items)) from None
        self._telemetry.received.labels(route.signal.value, RECEIVER).inc(len(items))
        return len(items)

    def refused(self, kind: str, refusal: Refusal) -> Response:
        self._telemetry.refused.labels(ROUTES[kind].signal.value, refusal.reason).inc(
            refusal.items
        )
        return error_response(refusal)


def _metric_rule_errors(items: list[dict[str, Any]]) -> list[ItemError]:
    errors = []
    for index, item in enumerate(items):
        try:
            metric_rules(item["type"], item["value"], item.get("buckets"), item.get("labels"))
        except FieldError as exc:
            errors.append(ItemError(index, exc.field, exc.message))
    return errors


def error_response(refusal: Refusal) -> Response:
    body = {"errors": [e.as_dict() for e in refusal.errors]}
    return Response(
        orjson.dumps(body), refusal.status, refusal.headers, media_type="application/json"
    )


def _count_items(body: bytes, batch: bool) -> int:
    if not batch:
        return 1
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 1
    return len(data) if isinstance(data, list) else 1


def request_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body: one object or an array of them."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"anyOf": [ref, {"type": "array", "items": ref}]}}
        },
    }


_ANSWERS = {
    "202": {"description": "Every item valid and durably queued: {\"accepted\": N}"},
    "400": {"description": "Body is not JSON"},
    "413": {"description": "Body or batch too large"},
    "415": {"description": "Content-Type is not application/json"},
    "422": {"description": "Validation failed: {\"errors\": [{index, field, message}]}"},
    "429": {"description": "Queue full; retry after Retry-After seconds"},
    "503": {"description": "Not accepting data now; retry after Retry-After seconds"},
}


def build_router(receiver: NativeReceiver) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["native"])

    def add(kind: str, model: type[BaseModel]) -> None:
        async def endpoint(request: Request) -> Response:
            try:
                accepted = await receiver.ingest(kind, request)
            except Refusal as refusal:
                return receiver.refused(kind, refusal)
            return Response(
                orjson.dumps({"accepted": accepted}), 202, media_type="application/json"
            )

        endpoint.__name__ = f"post_{kind}"
        router.add_api_route(
            f"/{kind}",
            endpoint,
            methods=["POST"],
            status_code=202,
            summary=f"Ingest native {kind}",
            openapi_extra={"requestBody": request_schema(model)},
            responses=_ANSWERS,
        )

    for kind, route in ROUTES.items():
        add(kind, route.model)
    return router
