"""The seed's public Python API for services (CONTRACT §7); import it from `flext_observability`.

- `result`: `FlextResult`, the railway result every fallible call returns
- `config`: `FlextObservabilityConfig` (`FLEXT_OBS_*`)
- `entities`, `factories`: `FlextMetric`, `FlextTrace`, ... and `flext_create_*`
- `client`: `FlextObservabilityClient`, the bounded background sender
- `services`, `factory`: the four services and `FlextObservabilityMasterFactory`
- `monitor`: `@flext_monitor_function`
- `tracecontext`: span ids and the current span (shared with OpenTelemetry)
"""
