"""The signals, once: what the collector carries (the queue's partitions, the `signal` label
of its self-metrics) and the name OTLP gives each it receives."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class Signal(StrEnum):
    METRICS = "metrics"
    SPANS = "spans"
    ALERTS = "alerts"
    HEALTH = "health"
    LOGS = "logs"


# OTLP's name of a signal (its path `/v1/<name>` and its service `Export<Name>ServiceRequest`).
OtlpKind = Literal["traces", "metrics", "logs"]
