"""The component registry: every exporter by its name, one line each.

A factory takes the whole config and what the graph shares (`ExporterContext`) and returns
its exporter, or None when the config leaves it off. The builder (`builder.py`) makes every
entry's exporter and the collector runs them as its sinks: adding an exporter is its folder
(`exporters/<name>/`: config model, `create`, logic) and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flext_observability.config import Config
from flext_observability.exporters.alertmanager import exporter as alertmanager
from flext_observability.exporters.alertmanager.state import AlertState
from flext_observability.exporters.debug import exporter as debug
from flext_observability.exporters.jaeger import exporter as jaeger
from flext_observability.pipeline.exporter import Exporter
from flext_observability.pipeline.queue import Queue
from flext_observability.telemetry import SelfTelemetry


@dataclass(frozen=True, slots=True)
class ExporterContext:
    """What exporters share: the queue they read, the self-telemetry, the alerts' state."""

    queue: Queue
    telemetry: SelfTelemetry
    alerts: AlertState


ExporterFactory = Callable[[Config, ExporterContext], Exporter | None]

EXPORTERS: dict[str, ExporterFactory] = {
    jaeger.NAME: lambda c, x: jaeger.create(c.exporters.jaeger, x.queue, x.telemetry),
    alertmanager.NAME: lambda c, x: alertmanager.create(
        c.exporters.alertmanager, x.alerts, x.telemetry),
    debug.NAME: lambda c, x: debug.create(c.exporters.debug, x.queue, x.telemetry),
}
