"""`@flext_monitor_function`: a calls counter, a duration histogram and a span per call;
`FlextObservabilityMonitor`: start, flush and stop of the process's monitoring.

Per call the caller pays for two clock reads, a span id, making the span current in the
OpenTelemetry context, one counter increment and one histogram observation kept in the
client, and one buffered span; the JSON is built later by the client's worker. The
function's result and exception pass through untouched; a failure of the instrumentation
itself is logged once and never reaches the caller.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar, cast, overload

from flext_observability.sdk.client import ClientStats, CounterKey
from flext_observability.sdk.factory import get_global_factory
from flext_observability.sdk.otlp import HistogramKey
from flext_observability.sdk.result import FlextResult
from flext_observability.sdk.tracecontext import (
    ContextToken,
    deactivate,
    enter_span,
    error_status,
    exception_event,
    span_hex,
    trace_hex,
)

if TYPE_CHECKING:
    from flext_observability.sdk.client import FlextObservabilityClient
    from flext_observability.sdk.factory import FlextObservabilityMasterFactory

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("flext_observability.sdk")

CALLS_METRIC = "flext_function_calls"  # a counter: exposed as flext_function_calls_total
DURATION_METRIC = "flext_function_duration_seconds"
DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
DURATION_HELP = "Duration of calls to functions under @flext_monitor_function"
MAX_NAME = 200  # models.native.NonEmpty


class _Target:
    """Where one decorated function reports, and its precomputed label sets."""

    __slots__ = ("attributes", "calls", "client", "durations", "name", "service")

    def __init__(self, name: str, namespace: str, factory: FlextObservabilityMasterFactory) -> None:
        config = factory.config
        self.client: FlextObservabilityClient = factory.client
        self.name = name
        self.service = config.service_name
        labels = {
            ok: (("function", name), ("outcome", "success" if ok else "error"))
            for ok in (True, False)
        }
        self.calls = {
            ok: CounterKey(CALLS_METRIC, self.service, config.instance, pairs)
            for ok, pairs in labels.items()
        }
        self.durations = {
            ok: HistogramKey(DURATION_METRIC, self.service, config.instance, pairs,
                             DURATION_BUCKETS, DURATION_HELP)
            for ok, pairs in labels.items()
        }
        self.attributes = {"code.function": name, "code.namespace": namespace}


class _CallSpan:
    __slots__ = ("end", "failure", "parent_id", "span_id", "start", "target", "trace_id")
    signal = "spans"

    def __init__(
        self,
        target: _Target,
        ids: tuple[int, int, int],
        start: int,
        end: int,
        failure: tuple[dict[str, str], dict[str, Any]] | None,
    ) -> None:
        self.target = target
        self.trace_id, self.span_id, self.parent_id = ids
        self.start = start
        self.end = end
        self.failure = failure  # (status, exception event), formatted at the call's end

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "trace_id": trace_hex(self.trace_id),
            "span_id": span_hex(self.span_id),
            "name": self.target.name,
            "service": self.target.service,
            "kind": "internal",
            "start_time": self.start,
            "end_time": self.end,
            "attributes": self.target.attributes,
        }
        if self.parent_id:
            payload["parent_span_id"] = span_hex(self.parent_id)
        if self.failure is not None:
            payload["status"], event = self.failure
            payload["events"] = [event]
        return payload


# (target, (trace id, span id, parent span id), wall start ns, context token, perf start ns)
_Call = tuple[_Target, tuple[int, int, int], int, ContextToken, int]


class _Probe:
    """The instrumentation of one decorated function; bound to its factory on first call."""

    __slots__ = ("_factory", "_name", "_namespace", "_target", "_warned")

    def __init__(
        self, name: str, namespace: str, factory: FlextObservabilityMasterFactory | None
    ) -> None:
        self._name = name[:MAX_NAME]
        self._namespace = namespace
        self._factory = factory
        self._target: _Target | None = None
        self._warned = False

    def begin(self) -> _Call | None:
        try:
            target = self._target
            if target is None:
                factory = self._factory if self._factory is not None else get_global_factory()
                target = self._target = _Target(self._name, self._namespace, factory)
            ids, token = enter_span()
            return target, ids, time.time_ns(), token, time.perf_counter_ns()
        except Exception:
            self._warn_once()
            return None

    def end(self, call: _Call, error: BaseException | None) -> None:
        elapsed = time.perf_counter_ns() - call[4]
        target, ids, start, token, _ = call
        try:
            deactivate(token)
            ok = error is None
            end = start + elapsed
            failure = None if error is None else (error_status(error), exception_event(error, end))
            target.client.record_call(
                target.calls[ok], target.durations[ok], elapsed / 1e9,
                _CallSpan(target, ids, start, end, failure),
            )
        except Exception:
            self._warn_once()

    def _warn_once(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning("flext_monitor_function(%r): instrumentation failed", self._name,
                        exc_info=True)


def _instrument(
    func: Callable[P, R], name: str | None, factory: FlextObservabilityMasterFactory | None
) -> Callable[P, R]:
    probe = _Probe(name or func.__qualname__, func.__module__, factory)

    if inspect.iscoroutinefunction(func):
        async_func = func

        @functools.wraps(func)
        async def monitored_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            call = probe.begin()
            if call is None:
                return await async_func(*args, **kwargs)
            try:
                result = await async_func(*args, **kwargs)
            except BaseException as exc:
                probe.end(call, exc)
                raise
            probe.end(call, None)
            return result

        return cast(Callable[P, R], monitored_async)

    @functools.wraps(func)
    def monitored(*args: P.args, **kwargs: P.kwargs) -> R:
        call = probe.begin()
        if call is None:
            return func(*args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            probe.end(call, exc)
            raise
        probe.end(call, None)
        return result

    return monitored


@overload
def flext_monitor_function(name: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def flext_monitor_function(
    name: str | None = None, *, factory: FlextObservabilityMasterFactory | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def flext_monitor_function(
    name: str | Callable[..., Any] | None = None,
    *,
    factory: FlextObservabilityMasterFactory | None = None,
) -> Any:
    """Monitor a sync or async function: `@flext_monitor_function` or `(...)("name")`.

    Per call: `flext_function_calls_total{function, outcome}` (outcome `success`|`error`),
    `flext_function_duration_seconds{function, outcome}` and an `internal` span named
    after the function (default: its `__qualname__`), a child of the current span (ours
    or OpenTelemetry's) and current while the function runs. A raised exception is
    recorded on the span (status error, `exception` event) and re-raised unchanged.
    Reports through `factory`, by default `get_global_factory()` (bound on the first call).
    """
    if callable(name):
        return _instrument(name, None, factory)

    def decorator(func: Callable[P, R]) -> Callable[P, R]:
        return _instrument(func, name, factory)

    return decorator


class FlextObservabilityMonitor:
    """The monitoring of this process: its client (the process-wide one unless a `factory`
    is given), when it starts, flushes and stops, and the factory its decorator reports to.

        monitor = FlextObservabilityMonitor()
        monitor.start()

        @monitor.function("orders.checkout")
        def checkout(cart): ...

        monitor.stop()  # sends what is left; the client is closed for good

    Also a context manager (start on enter, stop on exit). Every method returns a
    `FlextResult` and never raises; the client's counts (`ClientStats`) are the value.
    """

    def __init__(self, factory: FlextObservabilityMasterFactory | None = None) -> None:
        self._factory = factory

    @property
    def factory(self) -> FlextObservabilityMasterFactory:
        """The factory it runs: the one given, else `get_global_factory()`."""
        if self._factory is None:
            self._factory = get_global_factory()
        return self._factory

    @property
    def is_running(self) -> bool:
        """True until `stop()` (or the client's `close()`)."""
        return not self.factory.client.closed

    @property
    def stats(self) -> ClientStats:
        return self.factory.client.stats

    def start(self) -> FlextResult[FlextObservabilityMonitor]:
        """Start the client's background sender now (it also starts with the first item)."""
        client = self.factory.client
        if client.closed:
            return FlextResult.fail("monitor: its client is closed (stopped); make a new "
                                    "FlextObservabilityMasterFactory to monitor again")
        client.start()
        return FlextResult.ok(self)

    def flush(self, timeout: float | None = None) -> FlextResult[ClientStats]:
        """Send what is buffered now, waiting at most `timeout` seconds (None: no limit);
        a failure when something was not accepted in time."""
        if self.factory.flush(timeout):
            return FlextResult.ok(self.stats)
        return FlextResult.fail(f"flush: not everything was accepted in time: {self.stats}")

    def stop(self, timeout: float | None = None) -> FlextResult[ClientStats]:
        """Send what is left (within `timeout`, default `exit_flush_deadline`) and close the
        client; a failure when something was lost. Safe twice."""
        if self.factory.close(timeout):
            return FlextResult.ok(self.stats)
        return FlextResult.fail(f"stop: not everything was sent before closing: {self.stats}")

    def function(self, name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """`flext_monitor_function(name)` reporting to this monitor's factory."""
        return flext_monitor_function(name, factory=self.factory)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
