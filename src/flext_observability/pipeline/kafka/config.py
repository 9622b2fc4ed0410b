"""`queue.kafka`: the brokers, the topics per signal and how the collector creates them."""

from __future__ import annotations

import re
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


def _seconds(value: Any) -> Any:
    """`10s`, `500ms`, `1m` or a number of seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match is None:
            raise ValueError(f"'{value}' is not a duration like 10s, 500ms or 1m")
        return float(match.group(1)) * _UNIT[match.group(2)]
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]
Count = Annotated[int, Strict(), Field(gt=0)]
TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")]


class KafkaTopics(BaseModel):
    """A topic per signal. Spans, OTLP metrics and logs: OTLP protobuf export requests (the
    OpenTelemetry Collector's `otlp_proto`); native metrics, alerts, health: the collector's
    own encodings (README, "Scaling out")."""

    model_config = ConfigDict(extra="forbid")

    spans: TopicName = "otlp_spans"
    metrics: TopicName = "otlp_metrics"
    logs: TopicName = "otlp_logs"
    native_metrics: TopicName = "flext_native_metrics"
    alerts: TopicName = "flext_alerts"
    health: TopicName = "flext_health"

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        names = list(self.model_dump().values())
        shared = sorted({n for n in names if names.count(n) > 1})
        if shared:
            raise ValueError(f"each signal needs a topic of its own; shared: {', '.join(shared)}")
        return self


class KafkaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    brokers: list[Annotated[str, Field(pattern=r"^[^\s,:]+:\d{1,5}$")]] = Field(
        default=["127.0.0.1:9092"], min_length=1
    )
    topics: KafkaTopics = KafkaTopics()
    group_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")] = "flext"
    replication_factor: Count = 3
    min_insync_replicas: Count = 2
    partitions: Count = 12
    produce_timeout: Seconds = 10.0
    # A member of an exporter's consumer group that stops heartbeating leaves it after this.
    session_timeout: Seconds = 6.0
