"""The Alertmanager exporter: the held alerts to every configured Alertmanager (API v2).

As Prometheus' notifier does: each Alertmanager gets what changed as soon as it changed,
and every alert the collector holds again every `resend_interval`: firing ones with
`endsAt` 4 resend intervals ahead (so that Alertmanager resolves them by itself if the
collector goes away), resolved ones with `endsAt` = their resolve time, for 15 minutes.
Every URL has its own task, retry state and progress: one Alertmanager down never
delays another. Alerts come from `AlertState`, which is durable before the queue is
acknowledged, so after a crash the loaded state is sent again in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx

from flext_observability.exporters.alertmanager.config import AlertmanagerExporterConfig
from flext_observability.exporters.alertmanager.state import AlertState, HeldAlert, LabelSet
from flext_observability.pipeline.exporter import Delivery, Interrupted
from flext_observability.retry import ANY_5XX_RETRYABLE_HTTP_STATUS, PermanentError
from flext_observability.telemetry import SelfTelemetry
from flext_observability.tls import client_ssl_context

log = logging.getLogger(__name__)

NAME = "alertmanager"
INVALID = "invalid_alert"
ENDS_AT_RESEND_INTERVALS = 4
# How often, and how long at most, the exporter waits for the alerts' state to catch up
# with its log before its first send.
CATCH_UP_POLL = 0.1
CATCH_UP_LIMIT = 30.0
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def alerts_url(url: str) -> str:
    """`http://am:9093` -> `http://am:9093/api/v2/alerts` (kept when already there)."""
    url = url.rstrip("/")
    return url if url.endswith("/api/v2/alerts") else f"{url}/api/v2/alerts"


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def invalid_reason(held: HeldAlert) -> str | None:
    """Why Alertmanager 0.25 would refuse this alert with a 400 (its `Alert.Validate`)."""
    for kind, names in (("label", held.labels), ("annotation", held.annotations)):
        bad = [name for name in names if not _LABEL_NAME.match(name)]
        if bad:
            return f"invalid {kind} name(s) {', '.join(map(repr, bad))}"
    if held.ends_at is not None and held.ends_at < held.starts_at:
        return "ends_at is before starts_at"
    return None


def to_api(held: HeldAlert, ends_at: float) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": held.labels,
        "annotations": held.annotations,
        "startsAt": rfc3339(held.starts_at),
        "endsAt": rfc3339(ends_at),
    }
    if held.generator_url:
        alert["generatorURL"] = held.generator_url
    return alert


@dataclass(slots=True)
class _Target:
    url: str
    delivery: Delivery
    sent_version: int = -1
    next_full: float = 0.0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)


class AlertmanagerExporter:
    """One delivery task per Alertmanager URL, all reading the same `AlertState`."""

    def __init__(
        self,
        config: AlertmanagerExporterConfig,
        state: AlertState,
        telemetry: SelfTelemetry,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = NAME
        self.config = config
        self._state = state
        self._telemetry = telemetry
        self._clock = clock
        self._wall = wall_clock
        self._stop = asyncio.Event()
        self._targets = [
            _Target(
                url,
                Delivery(
                    f"{NAME} {url}", NAME, telemetry, config.retry, config.timeout, self._stop,
                    self._report_up, ANY_5XX_RETRYABLE_HTTP_STATUS,
                ),
            )
            for url in config.urls
        ]
        self._reported_invalid: dict[LabelSet, int] = {}
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _wake(self) -> None:
        for target in self._targets:
            target.wakeup.set()

    def _report_up(self) -> None:
        up = all(target.delivery.up for target in self._targets)
        self._telemetry.exporter_up.labels(NAME).set(1 if up else 0)

    def state(self) -> dict[str, Any]:
        running = bool(self._tasks)
        return {
            t.url: t.delivery.state() if running else {**t.delivery.state(), "state": "stopped"}
            for t in self._targets
        }

    async def start(self) -> None:
        if self._tasks or not self._targets:
            return
        self._stop.clear()
        self._client = httpx.AsyncClient(
            timeout=self.config.timeout, verify=client_ssl_context(self.config.tls)
        )
        self._report_up()
        # Subscribed while running only: an exporter a reload replaced is not called again.
        self._state.subscribe(self._wake)
        self._tasks = [
            asyncio.create_task(self._run(t), name=f"{NAME}-{t.url}") for t in self._targets
        ]

    async def shutdown(self, deadline: float) -> None:
        """Let running posts finish until `deadline` (on `clock`); the state keeps the rest."""
        if not self._tasks:
            return
        self._stop.set()
        self._state.unsubscribe(self._wake)
        self._wake()
        _, late = await asyncio.wait(self._tasks, timeout=max(0.0, deadline - self._clock()))
        for task in late:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self, target: _Target) -> None:
        """Send changes at once and everything every resend_interval; at shutdown, one
        last attempt (no retries) for changes not sent yet. Nothing before the state has
        caught up with its log (at most CATCH_UP_LIMIT): a restarted instance's older
        state (an alert resolved while it was down, still firing in it) is not sent."""
        limit = self._clock() + CATCH_UP_LIMIT
        while not self._state.caught_up():
            if self._clock() >= limit:
                log.warning("%s %s: the alerts' state has not caught up with its log in "
                            "%.0fs; sending it as it is", NAME, target.url, CATCH_UP_LIMIT)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), CATCH_UP_POLL)
            if self._stop.is_set():
                return
        while True:
            target.wakeup.clear()
            stopping = self._stop.is_set()
            full = not stopping and self._clock() >= target.next_full
            if not full and target.sent_version == self._state.version:
                if stopping:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(target.wakeup.wait(), target.next_full - self._clock())
                continue
            since = -1 if full else target.sent_version
            try:
                version, sent = await target.delivery.deliver(partial(self._post, target, since))
            except PermanentError as error:
                version, sent = self._state.version, 0
                log.error("%s %s: refused the alerts, not retried: %s", NAME, target.url, error)
            except Interrupted:
                return
            target.sent_version = version
            self._telemetry.exported.labels(NAME).inc(sent)
            if full:
                target.next_full = self._clock() + self.config.resend_interval

    async def _post(self, target: _Target, since: int) -> tuple[int, int]:
        """POST the alerts changed after version `since` (all with -1); (version, count)."""
        self._state.expire()
        version = self._state.version
        now = self._wall()
        ends_firing = now + ENDS_AT_RESEND_INTERVALS * self.config.resend_interval
        alerts = [
            to_api(held, held.ends_at or ends_firing)
            for held in self._valid(self._state.firing.values(), since)
        ]
        alerts += [
            to_api(held, held.ends_at or now)
            for held in self._valid(self._state.resolved.values(), since)
        ]
        if not alerts:
            return version, 0
        # Narrows the type: the client is made in start(), before the first send.
        assert self._client is not None  # nosec B101
        response = await self._client.post(alerts_url(target.url), json=alerts)
        if 400 <= response.status_code < 500 and response.status_code != 429:
            self._telemetry.dropped.labels(NAME, INVALID).inc(len(alerts))
            raise PermanentError(f"HTTP {response.status_code}: {response.text[:300]}", INVALID)
        response.raise_for_status()
        return version, len(alerts)

    def _valid(self, held_alerts: Iterable[HeldAlert], since: int) -> list[HeldAlert]:
        """The alerts changed after `since` that Alertmanager would take; the others are
        counted and logged once per change."""
        valid = []
        for held in held_alerts:
            if held.version <= since:
                continue
            reason = invalid_reason(held)
            if reason is None:
                valid.append(held)
                continue
            key = tuple(sorted(held.labels.items()))
            if self._reported_invalid.get(key) != held.version:
                self._reported_invalid[key] = held.version
                self._telemetry.dropped.labels(NAME, INVALID).inc()
                log.error("%s: alert %s not sent: %s", NAME, held.labels, reason)
        return valid


def create(
    config: AlertmanagerExporterConfig, alerts: AlertState, telemetry: SelfTelemetry
) -> AlertmanagerExporter | None:
    """The registry's factory: an exporter when `urls` are given."""
    return AlertmanagerExporter(config, alerts, telemetry) if config.urls else None
