"""The push routes and `build_pushgateway`, which wires them to a collector.

Answers as the Pushgateway's: 200 (empty) for an accepted PUT or POST, 202 for a DELETE,
400 with the reason as text for a bad path, body or an inconsistent push. A push is
answered only once it is durable in the queue (as the other receivers' requests); the
Prometheus exporter's consumer applies it to the groups, whose state the checkpoints keep.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry

from flext_observability.config import Config
from flext_observability.exporters.prometheus.exporter import PrometheusExporter
from flext_observability.exporters.prometheus.store import SUFFIXES, MetricStore
from flext_observability.models.native import TENANT
from flext_observability.pipeline.consumer import Checkpoints
from flext_observability.pipeline.queue import Queue, QueueClosed, QueueFull, Record
from flext_observability.receivers.auth import request_tenant
from flext_observability.receivers.body import media_type
from flext_observability.receivers.component import Receiver, ReceiverContext
from flext_observability.receivers.pushgateway.body import (
    PROTOBUF,
    BadBody,
    exposition_name,
    parse_text,
)
from flext_observability.receivers.pushgateway.config import PushgatewayConfig
from flext_observability.receivers.pushgateway.groups import (
    DELETE,
    FAIL,
    POST,
    PUT,
    Inconsistent,
    Push,
    PushGroups,
    PushState,
)
from flext_observability.receivers.pushgateway.path import PREFIX, BadPath, grouping_key
from flext_observability.receivers.toolkit import Refusal, queue_refusal, read_limited
from flext_observability.signals import Signal
from flext_observability.telemetry import SelfTelemetry

log = logging.getLogger(__name__)

NAME = "pushgateway"
# The encoding of pushes in the queue (signal metrics), applied by the Prometheus exporter.
ENCODING = "pushgateway"
INCONSISTENT = "pushed metrics are invalid or inconsistent with existing metrics: "
PROTOBUF_REFUSED = (
    "the delimited protobuf format is not taken (no maintained Python library provides "
    "io.prometheus.client.MetricFamily); push the text format"
)


def _text(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(message + "\n", status, headers, media_type="text/plain; charset=utf-8")


class PushReceiver:
    """`PUT|POST|DELETE /metrics/job/<job>{/<label>/<value>}`."""

    def __init__(
        self, queue: Queue, groups: PushGroups, telemetry: SelfTelemetry,
        settings: PushgatewayConfig, read_timeout: float,
    ) -> None:
        self.queue = queue
        self.groups = groups
        self._telemetry = telemetry
        self._settings = settings
        self._read_timeout = read_timeout

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route(
            PREFIX + "{rest:path}", self.handle, methods=["PUT", "POST", "DELETE"],
            tags=["pushgateway"], include_in_schema=False,
        )
        return router

    def apply(self, record: Record) -> tuple[int, dict[str, int]]:
        """Apply a queued push (the Prometheus exporter's applier for ENCODING)."""
        push = record.decoded if isinstance(record.decoded, Push) else Push.decode(record.payload)
        self.groups.apply(record.seq, push)
        return push.samples, {}

    def _refuse(self, status: int, reason: str, message: str, items: int = 1,
                headers: dict[str, str] | None = None) -> Response:
        self._telemetry.refused.labels(Signal.METRICS.value, reason).inc(items)
        log.debug("push refused (%d %s): %s", status, reason, message)
        return _text(message, status, headers)

    async def handle(self, request: Request) -> Response:
        try:
            labels = grouping_key(request.scope["path"])
        except BadPath as exc:
            return self._refuse(400, "malformed", str(exc))
        tenant = request_tenant(request.scope)
        if tenant is not None:
            labels[TENANT] = tenant
        key = tuple(sorted(labels.items()))
        now = self.groups.now()
        if request.method == DELETE.upper():
            return await self._queue(Push(DELETE, key, now), 202)
        try:
            body = await read_limited(request, self._settings.max_body_bytes, self._read_timeout)
        except Refusal as refusal:
            message = refusal.errors[0].message if refusal.errors else refusal.reason
            return self._refuse(refusal.status, refusal.reason, message,
                                headers=refusal.headers)
        if media_type(request.headers.get("content-type")) == PROTOBUF:
            return self._refuse(415, "unsupported_media_type", PROTOBUF_REFUSED)
        try:
            families = parse_text(body, labels)
        except BadBody as exc:
            if exc.reason == "malformed":
                return self._refuse(400, exc.reason, exc.message)
            await self._failed(key, now)
            return self._refuse(400, exc.reason, INCONSISTENT + exc.message)
        push = Push(PUT if request.method == "PUT" else POST, key, now, families, body)
        try:
            self.groups.admit(push)
        except Inconsistent as exc:
            await self._failed(key, now)
            return self._refuse(400, exc.reason, INCONSISTENT + exc.message,
                                items=max(push.samples, 1))
        return await self._queue(push, 200)

    async def _queue(self, push: Push, status: int) -> Response:
        items = max(push.samples, 1)
        # Nothing awaits between here and the queue numbering the push.
        seq = self.queue.next_seq
        self.groups.hold(seq, push)
        try:
            await self.queue.put(Signal.METRICS, ENCODING, push.encode(), items, push)
        except (QueueFull, QueueClosed) as exc:
            self.groups.discard(seq)
            refusal = queue_refusal(exc, items)
            return self._refuse(refusal.status, refusal.reason, str(exc), items,
                                refusal.headers)
        except BaseException:
            self.groups.discard(seq)
            raise
        self._telemetry.received.labels(Signal.METRICS.value, NAME).inc(push.samples)
        return Response(status_code=status)

    async def _failed(self, key: tuple[tuple[str, str], ...], now: float) -> None:
        """Record the failed push in the group's push_failure_time_seconds (best effort:
        with the queue full the refusal is answered all the same)."""
        push = Push(FAIL, key, now)
        try:
            await self.queue.put(Signal.METRICS, ENCODING, push.encode(), 1, push)
        except (QueueFull, QueueClosed) as exc:
            log.warning("push failure time of %s not kept: %s", key, exc)


def build_pushgateway(
    config: Config, queue: Queue, store: MetricStore, registry: CollectorRegistry,
    exporter: PrometheusExporter, checkpoints: Checkpoints, telemetry: SelfTelemetry,
) -> PushReceiver:
    """The push receiver over the collector's parts: its groups exposed in `registry`,
    applied by the Prometheus exporter, kept by the checkpoints; the store and the groups
    refuse each other's names."""
    own = {m.name for m in registry.collect()} | {
        s.name for m in registry.collect() for s in m.samples
    }

    def native_problem(base: str, kind: str) -> tuple[str, str] | None:
        name = exposition_name(base, kind)
        if name in own or base in own:
            return "reserved_name", f"metric {name} is exposed by the collector itself"
        problem = store.name_problem(
            base, kind if kind in SUFFIXES else "gauge", {}, foreign=False
        )
        if problem is not None:
            return problem
        if store.kind_of(base) is not None:
            return "type_conflict", (
                f"metric {name} is sent to the collector's other receivers; it cannot be "
                "pushed too"
            )
        return None

    settings = PushgatewayConfig.from_config(config)
    groups = PushGroups(native_problem, settings.group_ttl)
    registry.register(groups)
    store.foreign = groups.exposes
    checkpoints.add(NAME, PushState(groups))
    receiver = PushReceiver(queue, groups, telemetry, settings, config.server.read_timeout)
    exporter.appliers[ENCODING] = receiver.apply
    return receiver


def create(config: Config, context: ReceiverContext) -> Receiver | None:
    """The push API, in the collector process (None in an ingest worker, which passes
    pushes on to it) when the Prometheus exporter is on."""
    local = context.local
    if local is None or not config.exporters.prometheus.enabled:
        return None
    receiver = build_pushgateway(config, local.queue, local.store, local.registry,
                                 local.prometheus, local.checkpoints, context.telemetry)
    return Receiver(NAME, router=receiver.router())
