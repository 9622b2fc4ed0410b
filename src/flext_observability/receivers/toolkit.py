"""The HTTP receivers' toolkit: a refusal (status, reason, the errors listed) and its JSON
answer, the queue's refusals, and reading a request body within its limits. The native and
OTLP/HTTP receivers and the ingest limits use it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from flext_observability.models.errors import ItemError
from flext_observability.pipeline.queue import QueueClosed, QueueFull
from flext_observability.receivers.body import (
    BadEncoding,
    BodyTooLarge,
    SlowBody,
    UnsupportedEncoding,
    is_identity,
    read_body,
)

# A 422 lists this many errors at most, and then says how many were found.
MAX_ERRORS_LISTED = 100
SPANS_REFUSED = (
    "spans are not accepted: no span exporter is configured (set exporters.jaeger.endpoint "
    "or an exporters.otlp entry with traces, or queue.hold_unexported: true to hold them in "
    "the queue until one is)"
)


class Refusal(Exception):
    """A request answered with an error status; nothing from it was kept."""

    def __init__(
        self,
        status: int,
        reason: str,
        errors: list[ItemError],
        items: int = 1,
        headers: dict[str, str] | None = None,
        total: int = 0,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.errors = errors
        self.items = items
        self.headers = headers or {}
        # How many errors the request has: at least the errors listed
        self.total = max(total, len(errors))

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
        503, exc.reason, str(exc), items=items, headers={"Retry-After": str(exc.retry_after)}
    )


async def read_limited(request: Request, limit: int, seconds: float) -> bytes:
    """The request body, decompressed, refusing anything past `limit` bytes (413) or not
    complete within `seconds` (408: a slow sender must not hold a request slot)."""
    too_large = f"body is larger than {limit} bytes (server.max_body_bytes)"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refusal.single(413, "too_large", too_large)
    chunks = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refusal.single(413, "too_large", too_large)
                chunks.append(chunk)
    except TimeoutError:
        raise Refusal.single(
            408, "timeout",
            f"the body did not arrive within {seconds:g}s (server.read_timeout)",
            headers={"Connection": "close"},
        ) from None
    except SlowBody as exc:
        raise Refusal.single(408, "slow_body", str(exc), headers={"Connection": "close"}) from None
    except ClientDisconnect:
        # Nobody reads the answer; the refusal is counted all the same.
        raise Refusal.single(
            400, "client_disconnected", "the client left before the body was complete"
        ) from None
    encoding = request.headers.get("content-encoding")
    raw = b"".join(chunks)
    try:
        if is_identity(encoding):
            return read_body(raw, encoding, limit)
        # Decompressing takes up to `limit` bytes of output: in a thread (zlib lets go of
        # the GIL), so that the event loop keeps answering meanwhile.
        return await asyncio.to_thread(read_body, raw, encoding, limit)
    except BodyTooLarge:
        raise Refusal.single(
            413, "too_large",
            f"body is larger than {limit} bytes after decompression (server.max_body_bytes)",
        ) from None
    except BadEncoding as exc:
        status = 415 if isinstance(exc, UnsupportedEncoding) else 400
        raise Refusal.single(status, "bad_encoding", str(exc)) from None


def error_response(refusal: Refusal) -> Response:
    """`{"errors": [...]}` with the first MAX_ERRORS_LISTED errors, and `"total_errors"`
    when there are more."""
    body: dict[str, Any] = {
        "errors": [e.as_dict() for e in refusal.errors[:MAX_ERRORS_LISTED]]
    }
    if refusal.total > MAX_ERRORS_LISTED:
        body["total_errors"] = refusal.total
    return Response(
        orjson.dumps(body), refusal.status, refusal.headers, media_type="application/json"
    )
