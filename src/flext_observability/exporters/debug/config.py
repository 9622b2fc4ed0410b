"""`exporters.debug`: off by default; on, one log line per batch of the chosen signals."""

from __future__ import annotations

from typing import Literal

from flext_observability.settings import Section

DebugSignal = Literal["metrics", "spans", "alerts", "health"]


class DebugExporterConfig(Section):
    enabled: bool = False
    signals: list[DebugSignal] = ["metrics", "spans", "alerts", "health"]
