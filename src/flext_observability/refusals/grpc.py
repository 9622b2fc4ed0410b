"""The OTLP/gRPC receiver's recorder: as the HTTP middleware, per call. The `status` of a
gRPC refusal is its gRPC status code (0 for a partial success)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from flext_observability.refusals.log import RefusalLog, error_entry, recording, refusal_of
from flext_observability.refusals.middleware import answer_errors

Context = grpc.aio.ServicerContext[bytes, bytes]
Handler = Callable[[bytes, Context], Awaitable[bytes]]
RECEIVER = "otlp_grpc"


def recorded(
    handler: Handler, refusals: RefusalLog, path: str,
    tenant_of: Callable[[Context], str | None],
) -> Handler:
    """`handler` with its refusals kept in `refusals`; `path` is the OTLP/HTTP path of the
    same signal (`/v1/traces`), `tenant_of` the caller's tenant (None when unknown)."""

    async def export(request: bytes, context: Context) -> bytes:
        with recording() as pending:
            try:
                answer = await handler(request, context)
            except BaseException:
                if pending.reasons:
                    code: Any = context.code()
                    status = code.value[0] if isinstance(code, grpc.StatusCode) else 2
                    details = context.details() or ""
                    if isinstance(details, bytes):
                        details = details.decode("utf-8", "replace")
                    errors = [error_entry(None, "", details)] if details else []
                    refusal = refusal_of(pending, tenant_of(context), RECEIVER, status, errors)
                    if refusal is not None:
                        refusals.add(refusal)
                raise
            if pending.reasons:
                errors = answer_errors(path, 200, "application/x-protobuf", answer)
                refusal = refusal_of(pending, tenant_of(context), RECEIVER, 0, errors)
                if refusal is not None:
                    refusals.add(refusal)
            return answer

    return export
