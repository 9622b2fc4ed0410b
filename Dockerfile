# flext-observability collector image.
#
#   docker build -t flext-observability:local .
#   docker run --rm -p 4317:4317 -p 4318:4318 -v flext-data:/data flext-observability:local
#
# Two stages: the builder turns the source tree into a wheel; the runtime stage installs that
# wheel (and its dependencies, all of which ship manylinux wheels) into a virtualenv at
# /opt/venv and runs it as an unprivileged user. No compiler or source tree reaches the
# final image.
#
# Every install RUN is one plain command (no `&&` chains, no BuildKit-only flags) so that
# the install and start steps can be replayed outside Docker; only the user set-up chains.

# ---------------------------------------------------------------------------- builder
FROM python:3.11.13-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build

# Only what the wheel is made of (see .dockerignore); README.md is the long description
# pyproject.toml names.
COPY pyproject.toml README.md ./
COPY src/ ./src/

# The project's own wheel only: dependencies are resolved from the index at install time.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------------------- runtime
FROM python:3.11.13-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="flext-observability" \
      org.opencontainers.image.description="Telemetry collector: native JSON + OTLP in; Prometheus, Jaeger, Alertmanager out" \
      org.opencontainers.image.licenses="MIT"

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Fixed uid/gid so that volume ownership is predictable across rebuilds and hosts. /data
# holds the durable queue (queue.path); it is created here, owned by `flext`, so a fresh
# named volume mounted on it inherits that ownership.
RUN groupadd --system --gid 10001 flext \
 && useradd --system --uid 10001 --gid flext --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin flext \
 && install -d -o flext -g flext -m 0750 /data

# Default config: the compose stack's (listen on 0.0.0.0, queue in /data, export to the
# hosts `jaeger` and `alertmanager`). Elsewhere, mount your own file on this path or
# override keys with FLEXT_OBS_<SECTION>__<KEY> variables.
COPY config/collector.docker.yaml /etc/flext-observability/collector.yaml

RUN python -m venv /opt/venv
COPY --from=builder /wheels/ /tmp/wheels/
RUN python -m pip install --no-cache-dir /tmp/wheels/flext_observability-*.whl

# Numeric, so that runtimes can verify "non-root" without reading /etc/passwd.
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]

# 4317 OTLP/gRPC, 4318 HTTP (native API, OTLP/HTTP, /metrics, /healthz).
EXPOSE 4317 4318

# Liveness: /healthz answers 200 while the process serves. slim has no curl; urllib
# raises (exit 1) on a refused connection, a timeout or a non-2xx answer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:4318/healthz', timeout=4)"]

# SIGTERM (docker stop) makes the collector drain and stop cleanly.
STOPSIGNAL SIGTERM
CMD ["flext-observability", "serve", "--config", "/etc/flext-observability/collector.yaml"]
