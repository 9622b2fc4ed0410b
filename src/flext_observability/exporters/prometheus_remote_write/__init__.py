"""The Prometheus remote-write exporter (`exporters.prometheus_remote_write`).

`flext_observability.config` builds its `exporters` section from this package's config
model, which is made of the shared config types: importing the shared config first lets
either module be the first one imported.
"""

import flext_observability.config  # noqa: F401
