"""Bounds on HTTP connections, ahead of any request (uvicorn's httptools protocol has none).

- `server.max_connections`: connections open at once, per process. One past it closes the
  connection that has waited longest for a request head (idle, or sending its head), as
  nginx does with idle keep-alive connections, so that idle sockets cannot lock others
  out; when every connection is busy with a request, the new one is closed. The bound is
  kept below the open-files limit (whose soft value is raised to the hard one at start),
  so that accepting clients never takes the descriptors the queue and state files need.
- `server.header_timeout`: a request's head (request line and headers) must be complete
  this long after the connection opened or the request began; else 408 and close. An idle
  connection between requests is closed after `server.keep_alive_timeout`.
- `server.max_header_bytes`, `server.max_headers`: a larger head is answered 431 and the
  connection closed, so a head that never ends is never held whole.

On a graceful stop (SIGTERM, or an ingest worker replaced by a reload) a connection between
requests is not closed at once, under a request its client may be sending at that moment:
its next request is answered with `Connection: close`, and it is closed if none begins
within `DRAIN_IDLE_SECONDS`. A request in progress is answered, then the connection closed.

Each closed connection is counted in `flext_collector_refused_connections_total{reason}`.
"""

from __future__ import annotations

import asyncio
import resource
from asyncio import TimerHandle
from typing import Any, NamedTuple

from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_CONNECTIONS = "max_connections"
HEADER_TIMEOUT = "header_timeout"
HEADER_TOO_LARGE = "header_too_large"
TOO_MANY_HEADERS = "too_many_headers"
# Descriptors kept for all that is not a client connection (queue, state files, gRPC,
# the workers' channels, logs).
RESERVED_FDS = 128
# How long a stopping server keeps a connection open between requests for a request its
# client may already be sending.
DRAIN_IDLE_SECONDS = 1.0
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class ConnectionLimits(NamedTuple):
    max_connections: int
    max_header_bytes: int
    max_headers: int
    header_timeout: float


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one where allowed; the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            return soft
        return hard
    return soft


def connection_bound(max_connections: int, open_files: int) -> int:
    """`server.max_connections`, lowered to leave RESERVED_FDS descriptors free."""
    return max(1, min(max_connections, open_files - RESERVED_FDS))


class _Refused(Exception):
    """Raised in a parser callback: the head passed a limit (answered `status`)."""


def guarded_protocol(limits: ConnectionLimits, refused: Counter) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with `limits`; `refused` counts closed connections."""

    # The connections waiting for a request head, the longest waiting first.
    waiting: dict[GuardedHttpToolsProtocol, None] = {}

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = False
            self._head_bytes = 0
            self._head_count = 0
            self._head_timer: TimerHandle | None = None
            self._refusal: tuple[int, str, str] | None = None
            self._draining = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                refused.labels(MAX_CONNECTIONS).inc()
                oldest = next(iter(waiting), None)
                if oldest is None:
                    transport.close()
                    return
                waiting.pop(oldest)
                oldest.transport.close()
            waiting[self] = None
            self._begin_head()

        def connection_lost(self, exc: Exception | None) -> None:
            waiting.pop(self, None)
            self._stop_timer()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                waiting[self] = None

        def _begin_head(self) -> None:
            self._in_head = True
            self._head_bytes = self._head_count = 0
            self._stop_timer()
            self._head_timer = self.loop.call_later(limits.header_timeout, self._head_late)

        def _stop_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            self._head_timer = None
            if not self._in_head or self.transport.is_closing():
                return
            if not self._head_bytes:  # nothing sent: nobody to answer
                refused.labels(HEADER_TIMEOUT).inc()
                self._in_head = False
                self.transport.close()
                return
            self._close(408, HEADER_TIMEOUT,
                        f"the request head did not arrive within {limits.header_timeout:g}s "
                        "(server.header_timeout)")

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_head and not self.transport.is_closing():
                self._head_bytes += len(data)
                if self._head_bytes > limits.max_header_bytes:
                    self._close(431, HEADER_TOO_LARGE,
                                f"the request head is larger than {limits.max_header_bytes} "
                                "bytes (server.max_header_bytes)")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._in_head:  # a later request on this connection
                self._begin_head()

        def on_header(self, name: bytes, value: bytes) -> None:
            self._head_count += 1
            if self._head_count > limits.max_headers:
                self._refusal = (431, TOO_MANY_HEADERS,
                                 f"the request has more than {limits.max_headers} headers "
                                 "(server.max_headers)")
                raise _Refused
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            waiting.pop(self, None)
            self._in_head = False
            self._stop_timer()
            super().on_headers_complete()
            if self._draining and self.cycle is not None:
                self.cycle.keep_alive = False

        def shutdown(self) -> None:
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.keep_alive = False
                return
            self._draining = True
            if self.timeout_keep_alive_task is not None:
                self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = self.loop.call_later(
                DRAIN_IDLE_SECONDS, self.timeout_keep_alive_handler
            )

        def send_400_response(self, msg: str) -> None:
            if self._refusal is None:
                super().send_400_response(msg)
                return
            self._close(*self._refusal)

        def _close(self, status: int, reason: str, message: str) -> None:
            """Answer `status` with `message`, close, and count the connection refused."""
            refused.labels(reason).inc()
            self._in_head = False
            self._stop_timer()
            body = message.encode()
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, _REASONS[status], len(body), body)
            )
            self.transport.close()

    return GuardedHttpToolsProtocol
