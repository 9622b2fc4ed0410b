"""`exporters.prometheus`: the metric store's limits and expiry."""

from __future__ import annotations

from pydantic import Field

from flext_observability.settings import Duration, Int, Section


class PrometheusExporterConfig(Section):
    enabled: bool = True
    metric_expiration: Duration = 300.0
    max_series: Int = Field(default=100_000, gt=0)
    max_series_per_metric: Int = Field(default=10_000, gt=0)
    max_series_per_service: Int = Field(default=20_000, gt=0)
    # Pushed groups (the push API) unchanged this long are removed; null: never.
    push_group_ttl: Duration | None = None
