"""The generic OTLP exporter: `exporters.otlp` entries, and `exporters.jaeger` as its preset.

The shared config module is loaded first: it holds this package's config model in its
`ExportersConfig`, and the model is built from the shared config's types.
"""

import flext_observability.config  # noqa: F401
