"""The component registry: every exporter by its name, one line each.

A factory takes the whole config and what the graph shares (`ExporterContext`) and returns
its exporters: none when the config leaves it off, one, or one per entry of a list
(`exporters.otlp`). The builder (`builder.py`) makes every
entry's exporter and the collector runs them as its sinks: adding an exporter is its folder
(`exporters/<name>/`: config model, `create`, logic) and one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flext_observability.config import Config
from flext_observability.exporters.alertmanager import exporter as alertmanager
from flext_observability.exporters.alertmanager.state import AlertState
from flext_observability.exporters.debug import exporter as debug
from flext_observability.exporters.jaeger import exporter as jaeger
from flext_observability.exporters.otlp import exporter as otlp
from flext_observability.exporters.prometheus_remote_write import exporter as remote_write
from flext_observability.exporters.prometheus_remote_write.exporter import SampleSource
from flext_observability.pipeline.exporter import Exporter
from flext_observability.pipeline.queue import Queue
from flext_observability.telemetry import SelfTelemetry


@dataclass(frozen=True, slots=True)
class ExporterContext:
    """What exporters share: the queue they read, the self-telemetry, the alerts' state,
    and the held series (what /metrics shows: the metric store, the services' health)."""

    queue: Queue
    telemetry: SelfTelemetry
    alerts: AlertState
    series: Sequence[SampleSource]


# A factory's exporters: none when the config leaves it off, several for a list of entries.
ExporterFactory = Callable[[Config, ExporterContext], list[Exporter]]


def _one(exporter: Exporter | None) -> list[Exporter]:
    return [] if exporter is None else [exporter]


EXPORTERS: dict[str, ExporterFactory] = {
    jaeger.NAME: lambda c, x: _one(jaeger.create(c.exporters.jaeger, x.queue, x.telemetry)),
    otlp.NAME: lambda c, x: list(otlp.create(c.exporters.otlp, x.queue, x.telemetry)),
    alertmanager.NAME: lambda c, x: _one(alertmanager.create(
        c.exporters.alertmanager, x.alerts, x.telemetry)),
    remote_write.NAME: lambda c, x: _one(remote_write.create(
        c.exporters.prometheus_remote_write, x.series, x.telemetry)),
    debug.NAME: lambda c, x: _one(debug.create(c.exporters.debug, x.queue, x.telemetry)),
}
