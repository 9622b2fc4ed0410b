"""`GET /api/v1/refusals?limit=N&tenant=&signal=&reason=`: the most recent refused
requests, newest first; with authentication on, the caller's tenant's only."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from flext_observability.models.times import rfc3339
from flext_observability.receivers.auth import request_tenant
from flext_observability.refusals.log import RefusalLog, error_entry
from flext_observability.signals import Signal

DEFAULT_LIMIT = 100
_SIGNALS = frozenset(s.value for s in Signal)


class BadQuery(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _limit(text: str | None, capacity: int) -> int:
    if text is None:
        return min(DEFAULT_LIMIT, capacity)
    try:
        limit = int(text)
    except ValueError:
        raise BadQuery("limit", f"'{text}' is not an integer") from None
    if limit < 1:
        raise BadQuery("limit", "must be at least 1")
    return min(limit, capacity)


def query_refusals(log: RefusalLog, params: dict[str, str], caller: str | None) -> dict[str, Any]:
    """The answer's body for the query `params`; BadQuery names a bad parameter."""
    unknown = sorted(set(params) - {"limit", "tenant", "signal", "reason"})
    if unknown:
        raise BadQuery(unknown[0], "is not a known parameter (limit, tenant, signal, reason)")
    signal = params.get("signal") or None
    if signal is not None and signal not in _SIGNALS:
        raise BadQuery("signal", f"must be one of {', '.join(sorted(_SIGNALS))}")
    found = log.recent(
        _limit(params.get("limit"), log.capacity), visible_to=caller,
        tenant=params.get("tenant") or None, signal=signal, reason=params.get("reason") or None,
    )
    return {"refusals": [{**r.as_dict(), "time": rfc3339(r.time)} for r in found],
            "kept": log.capacity}


def build_refusals_router(log: RefusalLog) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["native"])

    @router.get("/refusals", summary="The most recent refused requests, newest first")
    async def refusals(request: Request) -> Response:
        try:
            body = query_refusals(log, dict(request.query_params),
                                  request_tenant(request.scope))
        except BadQuery as exc:
            return Response(orjson.dumps({"errors": [error_entry(None, exc.field, exc.message)]}),
                            400, media_type="application/json")
        return Response(orjson.dumps(body), media_type="application/json")

    return router
