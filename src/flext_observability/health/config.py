"""`health`: the default ttl after which a silent service is stale, and how many are held."""

from __future__ import annotations

from pydantic import Field

from flext_observability.settings import Duration, Int, Section


class HealthConfig(Section):
    default_ttl_seconds: Duration = 60.0
    # Services (tenant, service, instance) whose health is held.
    max_services: Int = Field(default=10_000, gt=0)
