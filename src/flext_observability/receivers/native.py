"""The native JSON API: `POST /api/v1/{metrics,spans,alerts,health}` (CONTRACT §2, §4).

A request is all-or-nothing: every item is validated, then the whole request is written
to the queue as one row, and only then answered 202.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter, ValidationError

from flext_observability.config import Config
from flext_observability.models.convert import spans_to_otlp
from flext_observability.models.errors import ItemError, describe, raw_errors
from flext_observability.models.native import (
    LABEL_VALUE_MAX_LENGTH,
    TENANT,
    Alert,
    HealthReport,
    Metric,
    Span,
)
from flext_observability.models.wire import (
    Run,
    WireMetric,
    decode_metrics,
    digest,
    from_models,
    pack_digest,
)
from flext_observability.pipeline.intake import (
    METRICS_DIGEST,
    NATIVE_JSON,
    OTLP_PROTOBUF,
    Inadmissible,
)
from flext_observability.pipeline.queue import QueueClosed, QueueFull
from flext_observability.processors.tenant import tag_resources
from flext_observability.receivers.auth import request_tenant
from flext_observability.receivers.body import (
    media_type,
)
from flext_observability.receivers.component import Receiver, ReceiverContext
from flext_observability.receivers.config import LimitsConfig
from flext_observability.receivers.toolkit import (
    MAX_ERRORS_LISTED,
    SPANS_REFUSED,
    Refusal,
    error_response,
    queue_refusal,
    read_limited,
)
from flext_observability.routes import NATIVE
from flext_observability.signals import Signal
from flext_observability.telemetry import SelfTelemetry

RECEIVER = "native"
# Batches with a body larger than this are validated this many items at a time.
_CHUNK_BODY = 256 * 1024
_CHUNK_ITEMS = 500
@dataclass(frozen=True, slots=True)
class _Route:
    """How one route validates: `one` parses an object, `many` an array."""

    signal: Signal
    model: type[BaseModel]
    one: TypeAdapter[Any]
    many: TypeAdapter[Any]


def _route(signal: Signal, model: type[BaseModel]) -> _Route:
    return _Route(signal, model, TypeAdapter(model), TypeAdapter(list[model]))  # type: ignore[valid-type]


# Each native route (routes.NATIVE) by its signal's name, with its model.
ROUTES = {
    signal.value: _route(signal, model)
    for signal, model in (
        (Signal.METRICS, Metric), (Signal.SPANS, Span), (Signal.ALERTS, Alert),
        (Signal.HEALTH, HealthReport),
    )
}


class NativeReceiver:
    """Validates native requests and queues them; the routes only translate to HTTP."""

    def __init__(
        self,
        queue_put: Callable[..., Any],
        telemetry: SelfTelemetry,
        max_body_bytes: int,
        *,
        read_timeout: float,
        limits: LimitsConfig,
        accepts_spans: bool = True,
    ) -> None:
        self._put = queue_put
        # Whether spans are taken (a span exporter, or queue.hold_unexported); reloadable.
        self.accepts_spans = accepts_spans
        self._telemetry = telemetry
        self._max_body = max_body_bytes
        self._max_items = limits.max_items_per_request
        self._read_timeout = read_timeout
        self._limits = limits

    def set_limits(self, limits: LimitsConfig) -> None:
        """The `limits` section of a reloaded config, for the next requests."""
        self._limits = limits
        self._max_items = limits.max_items_per_request

    async def _validate(self, route: _Route, body: bytes) -> list[Any]:
        """The body's items, valid, or a Refusal. A large batch is validated
        _CHUNK_ITEMS items at a time, the event loop serving others between chunks, and
        no further once MAX_ERRORS_LISTED errors are found."""
        batch = _is_batch(body)
        data = _loads(body) if batch and len(body) > _CHUNK_BODY else None
        if not isinstance(data, list):
            try:
                parsed = (route.many if batch else route.one).validate_json(body)
            except ValidationError as exc:
                raise self._refusal(route, body, batch, exc) from None
            return self._counted(parsed if batch else [parsed])
        self._counted(data)
        items: list[Any] = []
        errors: list[ItemError] = []
        reasons = set()
        total = 0
        for start in range(0, len(data), _CHUNK_ITEMS):
            chunk = data[start:start + _CHUNK_ITEMS]
            try:
                items += route.many.validate_json(orjson.dumps(chunk))
            except ValidationError as exc:
                total += exc.error_count()
                reason, found = self._problems(route, raw_errors(exc), chunk, True, start)
                reasons.add(reason)
                errors += found
                if len(errors) >= MAX_ERRORS_LISTED:
                    break
            await asyncio.sleep(0)
        if errors:
            reason = "invalid" if "invalid" in reasons else "label_limit"
            raise Refusal(422, reason, errors, items=len(data), total=total)
        return items

    async def _validate_metrics(self, body: bytes) -> list[WireMetric]:
        """The hot path (`models.wire`), or the model where it cannot decide."""
        items = decode_metrics(body, _is_batch(body))
        if items is not None:
            return self._counted(items)
        return from_models(await self._validate(ROUTES["metrics"], body))

    def _counted(self, items: list[Any]) -> list[Any]:
        if not items:
            raise Refusal.single(422, "invalid", "the batch is empty", items=0)
        if len(items) > self._max_items:
            raise Refusal.single(
                413, "too_many_items",
                f"the batch has {len(items)} items; limits.max_items_per_request is "
                f"{self._max_items}",
                items=len(items),
            )
        return items

    def _refusal(self, route: _Route, body: bytes, batch: bool, exc: ValidationError) -> Refusal:
        raw = raw_errors(exc)
        if raw[0]["type"] == "json_invalid":  # then the only error
            return Refusal.single(400, "malformed", f"body is not valid JSON: {raw[0]['msg']}")
        data = _loads(body)
        reason, errors = self._problems(route, raw, data, batch)
        items = len(data) if batch and isinstance(data, list) else 1
        return Refusal(422, reason, errors, items=items)

    def _problems(
        self, route: _Route, raw: list[Any], data: Any, batch: bool, index: int = 0
    ) -> tuple[str, list[ItemError]]:
        """(reason, errors) of pydantic's `raw` errors of `data` (the parsed body or a part
        of a batch, None if only pydantic reads it); `index`: the position of its first item
        in the batch."""
        errors = describe(raw, batch, index)
        if route.signal is not Signal.METRICS:
            return "invalid", errors
        # Label limits are listed from the raw items, in place of the model's own cap on
        # label values (which the configured limit never exceeds).
        invalid = [
            error
            for error, problem in zip(errors, raw, strict=True)
            if not (problem["type"] == "string_too_long" and problem["loc"][-2:-1] == ("labels",))
        ]
        limited = self._raw_label_errors(data, batch, index)
        reason = "invalid" if invalid else "label_limit"
        return reason, sorted(invalid + limited, key=lambda error: error.index or 0)

    def _raw_label_errors(self, data: Any, batch: bool, index: int) -> list[ItemError]:
        if data is None:  # NaN, Infinity: JSON that only pydantic reads
            return []
        errors = []
        items = data if batch and isinstance(data, list) else [data]
        for at, item in enumerate(items, index):
            labels = item.get("labels") if isinstance(item, dict) else None
            if isinstance(labels, dict):
                problem = self._label_problem(labels, 0)
                if problem is not None:
                    errors.append(problem.at(at))
        return errors

    def _label_problem(self, labels: dict[str, Any], extra: int) -> _Problem | None:
        """The first label limit `labels` passes; `extra` labels were added by the server."""
        max_labels = self._limits.max_labels_per_metric
        if len(labels) > max_labels + extra:
            return _Problem(
                "labels",
                f"{len(labels) - extra} labels are more than "
                f"limits.max_labels_per_metric={max_labels}",
            )
        max_length = self._limits.max_label_value_length
        for key, value in labels.items():
            if isinstance(value, str) and len(value) > max_length:
                return _Problem(f"labels.{key}", _too_long(_LABEL_VALUE_KEY, max_length))
        return None

    async def ingest(self, kind: str, request: Request) -> int:
        route = ROUTES[kind]
        if media_type(request.headers.get("content-type")) != "application/json":
            raise Refusal.single(
                415, "unsupported_media_type", "Content-Type must be application/json"
            )
        body = await read_limited(request, self._max_body, self._read_timeout)
        tenant = request_tenant(request.scope)
        decoded = None
        items: list[Any]
        if route.signal is Signal.METRICS:
            items = await self._validate_metrics(body)
            if tenant is not None:
                for metric in items:
                    metric.labels = {**metric.labels, TENANT: tenant}
            errors = self._label_limit_errors(items, tenant is not None)
            if errors:
                raise Refusal(422, "label_limit", errors, items=len(items))
            decoded = digest(items)
            errors = self._bucket_limit_errors(decoded.runs)
            if errors:
                raise Refusal(422, "bucket_limit", errors, items=len(items))
            encoding, payload = METRICS_DIGEST, pack_digest(decoded)
        elif route.signal is Signal.SPANS:
            items = await self._validate(route, body)
            errors = self._attribute_errors(items)
            if errors:
                raise Refusal(422, "attribute_limit", errors, items=len(items))
            if not self.accepts_spans:
                raise Refusal.single(422, "no_exporter", SPANS_REFUSED, items=len(items))
            otlp = spans_to_otlp(items)
            if tenant is not None:
                tag_resources(otlp.resource_spans, tenant)
            encoding, payload = OTLP_PROTOBUF, otlp.SerializeToString()
        else:
            items = await self._validate(route, body)
            encoding = NATIVE_JSON
            records = [item.model_dump(mode="json") for item in items]
            if tenant is not None:
                for record in records:
                    # a field (whose limits it counts against); alerts: a label too (part
                    # of the alert's identity)
                    record[TENANT] = tenant
                    if route.signal is Signal.ALERTS:
                        record["labels"][TENANT] = tenant
            payload = orjson.dumps(records)
        try:
            await self._put(route.signal, encoding, payload, len(items), decoded)
        except (QueueFull, QueueClosed) as exc:
            raise queue_refusal(exc, len(items)) from None
        except Inadmissible as exc:
            raise Refusal(422, exc.reason, exc.errors, items=len(items)) from None
        self._telemetry.received.labels(route.signal.value, RECEIVER).inc(len(items))
        return len(items)

    def refused(self, kind: str, refusal: Refusal) -> Response:
        self._telemetry.refused.labels(ROUTES[kind].signal.value, refusal.reason).inc(
            refusal.items
        )
        return error_response(refusal)


    def _label_limit_errors(self, items: list[WireMetric], tenant: bool) -> list[ItemError]:
        """Items past the label limits; the tenant label, added by the server, does not
        count."""
        max_labels = self._limits.max_labels_per_metric + tenant
        max_length = self._limits.max_label_value_length
        check_lengths = max_length < _MODEL_LABEL_VALUE_CAP  # else the decoder checked them
        errors = []
        for index, item in enumerate(items):
            labels = item.labels
            if labels and (
                len(labels) > max_labels
                or (check_lengths and max(map(len, labels.values())) > max_length)
            ):
                problem = self._label_problem(labels, tenant)
                if problem is not None:
                    errors.append(problem.at(index))
        return errors

    def _bucket_limit_errors(self, runs: list[Run]) -> list[ItemError]:
        """Histograms with more bounds than limits.max_buckets_per_histogram (the items of
        a run share their bounds)."""
        limit = self._limits.max_buckets_per_histogram
        errors = []
        start = 0
        for run in runs:
            if run.buckets is not None and len(run.buckets) > limit:
                errors += [
                    ItemError(
                        index, "buckets",
                        f"{len(run.buckets)} bounds are more than "
                        f"limits.max_buckets_per_histogram={limit}",
                    )
                    for index in range(start, start + run.count)
                ]
            start += run.count
        return errors

    def _attribute_errors(self, spans: list[Span]) -> list[ItemError]:
        """Spans past limits.max_attributes_per_item or max_attribute_value_length."""
        max_attributes = self._limits.max_attributes_per_item
        max_length = self._limits.max_attribute_value_length
        errors = []
        for index, span in enumerate(spans):
            attributes = span.attributes
            if len(attributes) > max_attributes:
                errors.append(ItemError(
                    index, "attributes",
                    f"{len(attributes)} attributes are more than "
                    f"limits.max_attributes_per_item={max_attributes}",
                ))
                continue
            for key, value in attributes.items():
                values = value if isinstance(value, list) else (value,)
                if any(isinstance(v, str) and len(v) > max_length for v in values):
                    errors.append(ItemError(
                        index, f"attributes.{key}",
                        _too_long("limits.max_attribute_value_length", max_length),
                    ))
                    break
        return errors


_LABEL_VALUE_KEY = "limits.max_label_value_length"
# The models' own cap on a label value's length (limits.max_label_value_length is at most it).
_MODEL_LABEL_VALUE_CAP = LABEL_VALUE_MAX_LENGTH


def _too_long(key: str, limit: int) -> str:
    return f"is longer than {key}={limit}"


class _Problem(NamedTuple):
    """A limit one item passes: where, and what."""

    field: str
    message: str

    def at(self, index: int) -> ItemError:
        return ItemError(index, self.field, self.message)


def _is_batch(body: bytes) -> bool:
    """True for a JSON array, False for an object; anything else is refused (400)."""
    start = body.lstrip()[:1]
    if start not in (b"{", b"["):
        if not start:
            raise Refusal.single(400, "malformed", "body is empty; send a JSON object or array")
        raise Refusal.single(400, "malformed", "body is not a JSON object or array")
    return start == b"["


def _loads(body: bytes) -> Any:
    """The body parsed, or None when orjson does not read it (NaN, Infinity)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def request_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body: one object or an array of them."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"anyOf": [ref, {"type": "array", "items": ref}]}}
        },
    }


_ANSWERS: dict[int | str, dict[str, Any]] = {
    "202": {"description": "Every item valid and durably queued: {\"accepted\": N}"},
    "400": {"description": "Body is not JSON"},
    "408": {"description": "The body did not arrive within server.read_timeout"},
    "413": {"description": "Body or batch too large"},
    "415": {"description": "Content-Type is not application/json"},
    "422": {"description": "Validation failed: {\"errors\": [{index, field, message}]}"},
    "429": {"description": "Queue full; retry after Retry-After seconds"},
    "503": {"description": "Not accepting data now; retry after Retry-After seconds"},
}


def build_router(receiver: NativeReceiver) -> APIRouter:
    router = APIRouter(tags=["native"])

    def add(kind: str, path: str, model: type[BaseModel]) -> None:
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
            path,
            endpoint,
            methods=["POST"],
            status_code=202,
            summary=f"Ingest native {kind}",
            openapi_extra={"requestBody": request_schema(model)},
            responses=_ANSWERS,
        )

    for kind, route in ROUTES.items():
        add(kind, NATIVE[route.signal].path, route.model)
    return router


def create(config: Config, context: ReceiverContext) -> Receiver:
    """The native API (`components.RECEIVERS`): its routes over `context.put`; a reload
    changes its limits and whether spans are taken."""
    server = config.server
    receiver = NativeReceiver(
        context.put, context.telemetry, server.max_body_bytes,
        read_timeout=server.read_timeout, limits=config.limits,
        accepts_spans=config.accepts_spans(),
    )

    def apply(new: Config) -> None:
        receiver.set_limits(new.limits)
        receiver.accepts_spans = new.accepts_spans()

    return Receiver(RECEIVER, router=build_router(receiver), apply=apply)
