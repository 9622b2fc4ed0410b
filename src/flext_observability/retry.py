"""Retry rules, once, for every sender: the exporters (`pipeline.exporter`) and the SDK client.

A failure is classified once: `PermanentError` (drop, count, log) or `RetryableError` (back
off, try again). OTLP/HTTP's rule decides which HTTP statuses are retryable (429, 502, 503,
504; every other 4xx/5xx is permanent); a downstream's `Retry-After` (delta-seconds or an
HTTP date, RFC 9110 §10.2.3) or gRPC RetryInfo is honoured: the wait is at least that long.
Waits grow exponentially with jitter (`Backoff`). Nothing here imports gRPC: a gRPC error
exists only once a sender has imported grpc, and the SDK never does.
"""

from __future__ import annotations

import email.utils
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import httpx

# OTLP/HTTP: "429, 502, 503, 504 are retryable; all other 4xx or 5xx are not".
RETRYABLE_HTTP_STATUS = frozenset({429, 502, 503, 504})
# Alertmanager answers 500 when it cannot store alerts: every 5xx is worth another try.
ANY_5XX_RETRYABLE_HTTP_STATUS = frozenset({429} | set(range(500, 600)))
# OTLP/gRPC: retryable codes, and codes retryable only when the server says when (RetryInfo).
RETRYABLE_GRPC_CODES = frozenset({
    "UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED", "OUT_OF_RANGE", "DATA_LOSS",
})
RETRYABLE_WITH_RETRY_INFO_GRPC_CODES = frozenset({"RESOURCE_EXHAUSTED"})
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class PermanentError(Exception):
    """The downstream will never accept this data: drop it, count it under `reason`."""

    def __init__(self, message: str, reason: str = "permanent_error") -> None:
        super().__init__(message)
        self.reason = reason


class RetryableError(Exception):
    """Try again later; `retry_after` is the downstream's own delay, when it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """`Retry-After: 120` or an HTTP date -> seconds to wait (a date past is 0); None when
    absent or unreadable (`1.5`, `-3` are neither delta-seconds nor a date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    seconds = when.timestamp() - now()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def classify_status(
    status: int, retry_after: str | None, detail: str,
    retryable: frozenset[int] = RETRYABLE_HTTP_STATUS,
) -> PermanentError | RetryableError | None:
    """An HTTP answer: None when accepted (2xx), else permanent or retryable."""
    if 200 <= status < 300:
        return None
    message = f"HTTP {status}: {detail}"
    if status in retryable:
        return RetryableError(message, parse_retry_after(retry_after))
    return PermanentError(message)


def _grpc_retry_delay(trailing: Any) -> float | None:
    from google.protobuf.descriptor import Descriptor
    from google.rpc.error_details_pb2 import RetryInfo
    from google.rpc.status_pb2 import Status

    for key, value in trailing or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        for detail in Status.FromString(value).details:
            # types-protobuf: DESCRIPTOR may be upb's Descriptor, which `Is` takes at run time.
            if detail.Is(cast(Descriptor, RetryInfo.DESCRIPTOR)):
                info = RetryInfo()
                detail.Unpack(info)
                return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


class _FailedCall(Protocol):
    """What a failed gRPC call tells, in both of grpc's APIs."""

    def code(self) -> Any: ...

    def details(self) -> str | None: ...

    def trailing_metadata(self) -> Any: ...


def _grpc_error(exc: BaseException) -> PermanentError | RetryableError | None:
    """A failed call of grpc.aio (AioRpcError) or of a blocking stub (an RpcError that is
    also its grpc.Call)."""
    grpc = sys.modules.get("grpc")
    aio = sys.modules.get("grpc.aio")
    called = grpc is not None and isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call)
    if not (called or (aio is not None and isinstance(exc, aio.AioRpcError))):
        return None
    call = cast(_FailedCall, exc)
    code = call.code().name
    message = f"gRPC {code}: {call.details()}"
    delay = _grpc_retry_delay(call.trailing_metadata())
    if code in RETRYABLE_GRPC_CODES:
        return RetryableError(message, delay)
    if code in RETRYABLE_WITH_RETRY_INFO_GRPC_CODES and delay is not None:
        return RetryableError(message, delay)
    return PermanentError(message)


def classify(
    exc: BaseException, retryable_http: frozenset[int] = RETRYABLE_HTTP_STATUS
) -> PermanentError | RetryableError:
    """The one place a transport failure becomes permanent or retryable."""
    if isinstance(exc, PermanentError | RetryableError):
        return exc
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return classify_status(
            response.status_code, response.headers.get("retry-after"), response.text[:300],
            retryable_http,
        ) or PermanentError(f"HTTP {response.status_code} raised as an error")
    grpc_error = _grpc_error(exc)
    if grpc_error is not None:
        return grpc_error
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return RetryableError("timed out")
    if isinstance(exc, httpx.TransportError | OSError):
        return RetryableError(f"{type(exc).__name__}: {exc}")
    # An error nobody classified is retried, as the Collector does: data is never dropped
    # by accident; the sender stalls, logs, and the queue's limits push back.
    return RetryableError(f"unexpected {type(exc).__name__}: {exc}")


class BackoffPolicy(Protocol):
    """The exponential backoff's settings (`RetryConfig` is one)."""

    @property
    def initial_interval(self) -> float: ...

    @property
    def max_interval(self) -> float: ...

    @property
    def multiplier(self) -> float: ...

    @property
    def randomization_factor(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Intervals:
    """A `BackoffPolicy` given in code (the SDK client's)."""

    initial_interval: float
    max_interval: float
    multiplier: float = 2.0
    randomization_factor: float = 0.5


class Backoff:
    """Exponential intervals with jitter; a downstream's own delay wins when it is longer."""

    def __init__(self, policy: BackoffPolicy, rng: Callable[[], float] = random.random) -> None:
        self._policy = policy
        self._rng = rng
        self._interval = policy.initial_interval

    def next(self, retry_after: float | None = None) -> float:
        policy = self._policy
        spread = policy.randomization_factor * self._interval
        delay = min(self._interval - spread + 2 * spread * self._rng(), policy.max_interval)
        self._interval = min(self._interval * policy.multiplier, policy.max_interval)
        return max(delay, retry_after or 0.0)
