"""The push API's settings, read from the collector's config."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from flext_observability.config import Config


class PushgatewayConfig(BaseModel):
    """`group_ttl`: seconds after its last push that a group is removed (None: never, as
    the Pushgateway); `max_body_bytes`: the largest body taken, after decompression."""

    model_config = ConfigDict(frozen=True)

    group_ttl: float | None = None
    max_body_bytes: int = 16 * 1024 * 1024

    @classmethod
    def from_config(cls, config: Config) -> PushgatewayConfig:
        return cls(
            group_ttl=config.exporters.prometheus.push_group_ttl,
            max_body_bytes=config.server.max_body_bytes,
        )
