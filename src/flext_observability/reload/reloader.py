"""Re-read the config file and apply what can change while running (CONTRACT §11).

Applied in place, without closing a listener, a connection or a queued item: the
`limits` section (the memory limiter's too: judged again at once), the auth tokens and
tenants, the TLS certificate files (re-read into the HTTP listener's live SSL context and
the gRPC listener's certificate fetcher: new handshakes get the new certificate), the
health TTL and service limit, `server.log_level`, and every
exporter of the registry (`components.EXPORTERS`), added, removed or changed
(`Collector.replace_exporters`: an unchanged one keeps running, a replaced one finishes its
deliveries in flight and its successor goes on from its queue cursor; the receivers take
spans and logs as the new exporters say; with the Kafka queue an exporter's consumer group
is joined or left). Any other changed key needs a restart: it is reported and left as it was. A file
that does not load changes nothing; the answer lists every error with its YAML path.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import Gauge

from flext_observability.components import EXPORTERS
from flext_observability.config import Config, ConfigError, load_config
from flext_observability.processors.limits import MIB
from flext_observability.tls import server_ssl_context

if TYPE_CHECKING:
    from flext_observability.collector import Collector

log = logging.getLogger(__name__)

# Changed keys applied in place: these, and every key under them.
APPLIED = ("limits", "server.auth", "server.tls", "server.log_level",
           "health.default_ttl_seconds", "health.max_services")
# The sections of the registry's exporters.
EXPORTER_KEYS = tuple(f"exporters.{name}" for name in EXPORTERS)
# ... except this one, which needs a restart like every other key (the alerts' state is
# sized at start).
NOT_APPLIED = ("exporters.alertmanager.max_alerts",)
ROUTE = "/-/reload"
# Seconds a replaced exporter gets to finish its posts.
EXPORTER_SHUTDOWN_GRACE = 5.0


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        found: dict[str, Any] = {}
        for key, value in data.items():
            found.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
        return found
    return {prefix: data}


def changed_keys(old: Config, new: Config) -> list[str]:
    """The dotted YAML paths whose value differs (token values are never shown, only the
    key `server.auth` when the tokens or tenants differ)."""
    before, after = _leaves(old.model_dump(mode="json")), _leaves(new.model_dump(mode="json"))
    keys = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    keys = {"server.auth" if k.startswith("server.auth.") else k for k in keys}
    if _tokens(old) != _tokens(new):
        keys.add("server.auth")
    return sorted(keys)


def _tokens(config: Config) -> list[tuple[str, str]]:
    return [(e.token, e.tenant) for e in config.server.auth.entries()]


def _applied(key: str) -> bool:
    """Whether a changed key is applied in place."""
    def under(prefix: str) -> bool:
        return key == prefix or key.startswith(prefix + ".")

    return any(map(under, APPLIED + EXPORTER_KEYS)) and not any(map(under, NOT_APPLIED))


def error_entry(line: str) -> dict[str, str]:
    """`file: yaml.path: message` (or `VARIABLE (yaml.path): message`) as its parts."""
    head, _, message = line.rpartition(": ")
    where = head.rpartition(": ")[2] if head else ""
    if "(" in where and where.endswith(")"):
        where = where[where.index("(") + 1:-1]
    return {"field": where, "message": message or line, "error": line}


@dataclass
class Outcome:
    ok: bool
    applied: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        if not self.ok:
            return {"status": "error", "errors": [error_entry(e) for e in self.errors]}
        return {"status": "success", "applied": self.applied,
                "restart_needed": self.restart_needed}


class Reloader:
    """Reloads `path` into the running collector; one reload at a time."""

    def __init__(self, collector: Collector, path: Path | None,
                 load: Callable[[Path | None], Config] = load_config) -> None:
        self._collector = collector
        self._path = path
        self._load = load
        self._lock = asyncio.Lock()
        # The HTTP listener's live SSL contexts (set once uvicorn has built them).
        self.ssl_contexts: list[ssl.SSLContext] = []
        # Called with the config to apply (the ingest workers, with server.workers > 0).
        self.on_applied: list[Callable[[Config], Awaitable[None]]] = []
        registry = collector.registry
        self.successful = Gauge("flext_collector_config_last_reload_successful",
                                "1 when the last config reload succeeded (or none was asked)",
                                registry=registry)
        self.success_time = Gauge("flext_collector_config_last_reload_success_timestamp_seconds",
                                  "When the config was last loaded successfully (Unix seconds)",
                                  registry=registry)
        self.successful.set(1)
        self.success_time.set(time.time())

    async def reload(self) -> Outcome:
        async with self._lock:
            config, result = await asyncio.to_thread(self._prepare)
            if config is None:
                self.successful.set(0)
                log.error("config reload failed, nothing changed: %s", "; ".join(result.errors))
                return result
            exporters_changed = config.exporters != self._collector.config.exporters
            await self._apply(config)
            if exporters_changed:
                replaced = await self._collector.replace_exporters(
                    config, EXPORTER_SHUTDOWN_GRACE)
                log.info("exporters replaced: %s", ",".join(replaced) or "-")
            for hook in self.on_applied:
                await hook(config)
            self.successful.set(1)
            self.success_time.set(time.time())
            log.info("config reloaded: applied=%s restart_needed=%s",
                     ",".join(result.applied) or "-", ",".join(result.restart_needed) or "-")
            return result

    def _prepare(self) -> tuple[Config | None, Outcome]:
        """Load and check the file (in a thread: it reads files); nothing is applied yet.
        Returns the config to run with: the new values of the keys applied, the old
        ones of the others."""
        current = self._collector.config
        try:
            new = self._load(self._path)
        except ConfigError as exc:
            return None, Outcome(False, errors=list(exc.errors))
        keys = changed_keys(current, new)
        applied = [k for k in keys if _applied(k)]
        restart = [k for k in keys if not _applied(k)]
        if (current.server.auth.entries() == []) != (new.server.auth.entries() == []):
            applied = [k for k in applied if k != "server.auth"]
            restart.append("server.auth (turning authentication on or off)")
        tls_on = current.server.tls.cert_file is not None
        if tls_on != (new.server.tls.cert_file is not None):
            applied = [k for k in applied if not k.startswith("server.tls")]
            restart.append("server.tls (turning TLS on or off)")
        elif tls_on:
            try:
                server_ssl_context(new.server.tls)
            except (OSError, ssl.SSLError) as exc:
                return None, Outcome(False, errors=[f"server.tls: cannot load: {exc}"])
            applied.append("server.tls (certificate files re-read, for HTTP and gRPC)")
        server = current.server.model_copy(update={
            "auth": new.server.auth if "server.auth" in applied else current.server.auth,
            "tls": new.server.tls if tls_on and new.server.tls.cert_file else current.server.tls,
            "log_level": new.server.log_level,
        })
        health = current.health.model_copy(update={
            "default_ttl_seconds": new.health.default_ttl_seconds,
            "max_services": new.health.max_services,
        })
        alertmanager = new.exporters.alertmanager.model_copy(
            update={"max_alerts": current.exporters.alertmanager.max_alerts})
        exporters = new.exporters.model_copy(update={
            "prometheus": current.exporters.prometheus, "alertmanager": alertmanager})
        running = current.model_copy(update={
            "server": server, "limits": new.limits,
            "health": health, "exporters": exporters,
        })
        return running, Outcome(True, sorted(set(applied)), sorted(set(restart)))

    async def _apply(self, config: Config) -> None:
        collector = self._collector
        limits = config.limits
        await collector.memory.reconfigure(
            limits.memory_limit_mib * MIB, limits.memory_spike_limit_mib * MIB,
            limits.memory_check_interval,
        )
        collector.ingest.apply(config)
        for gate in (collector.ingest.http_gate, collector.grpc_gate):
            gate.max_in_flight = limits.max_concurrent_requests
            gate.retry_after = limits.retry_after_seconds
        collector.ingest.http_gate.max_slow = limits.max_slow_requests
        collector.ingest.http_gate.slow_after = limits.slow_body_seconds
        if collector.authenticator is not None and config.server.auth.entries():
            collector.authenticator.replace(_tokens(config))
        collector.health.default_ttl = config.health.default_ttl_seconds
        collector.health.max_services = config.health.max_services
        tls = config.server.tls
        if tls.cert_file is not None and tls.key_file is not None:
            for context in self.ssl_contexts:
                context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
                if tls.client_ca_file is not None:
                    context.load_verify_locations(str(tls.client_ca_file))
        if config.server.log_level is not None:
            logging.getLogger().setLevel(config.server.log_level.upper())
        collector.config = config


def add_reload_route(app: FastAPI, reloader: Reloader) -> None:
    """`POST /-/reload`: 200 with what was applied and what needs a restart, or 400 with
    every error (nothing changed)."""

    @app.post(ROUTE, tags=["operations"])
    async def reload_config() -> Response:
        outcome = await reloader.reload()
        return Response(orjson.dumps(outcome.body()), 200 if outcome.ok else 400,
                        media_type="application/json")
