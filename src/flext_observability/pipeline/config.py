"""The queue's settings (`queue`): its kind, where it keeps its data, its bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from flext_observability.pipeline.kafka.config import KafkaConfig
from flext_observability.settings import Float, Int, Section


class QueueConfig(Section):
    kind: Literal["disk", "memory", "kafka"] = "disk"
    path: Path = Path(".flext-observability")
    max_items: Int = Field(default=1_000_000, gt=0)
    max_bytes: Int = Field(default=1024 * 1024 * 1024, gt=0)
    signal_share: Float = Field(default=0.5, gt=0, le=1)
    retry_after_seconds: Int = Field(default=5, gt=0)
    # kind disk: each commit reaches the disk before the answer (true), or only the OS
    # (false: still safe across kill -9, not across a power loss; otelcol's file_storage
    # default).
    fsync: bool = True
    # Spans with no span exporter configured: refused (the default), or held here until one is.
    hold_unexported: bool = False
    # kind kafka: the brokers and topics (queue.path keeps the applied state and offsets)
    kafka: KafkaConfig = KafkaConfig()
