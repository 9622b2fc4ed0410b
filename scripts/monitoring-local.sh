#!/usr/bin/env bash
# The monitoring stack without Docker: Debian's Prometheus and Alertmanager plus the
# collector from .venv, all on 127.0.0.1, in the foreground. Ctrl-C (or SIGTERM) stops
# all three; if one of them dies, the others are stopped too.
#
#   scripts/monitoring-local.sh                    # run (make monitoring-local)
#   scripts/monitoring-local.sh --no-collector     # only Prometheus + Alertmanager
#   scripts/monitoring-local.sh --render DIR       # write the local Prometheus config to DIR, exit
#
# Environment:
#   PROM_PORT            Prometheus port (default 9090)
#   AM_PORT              Alertmanager port (default 9093)
#   COLLECTOR_HTTP_PORT  collector HTTP port (default 4318), scraped by Prometheus
#   COLLECTOR_GRPC_PORT  collector OTLP/gRPC port (default 4317)
#   DATA_DIR             where Prometheus, Alertmanager and the collector's queue keep
#                        their data; default: a temporary directory removed on exit
#   FLEXT_OBS_BIN        the collector command (default .venv/bin/flext-observability)
#   PROMETHEUS_BIN, ALERTMANAGER_BIN   default: prometheus, prometheus-alertmanager
#
# The Prometheus config is derived from prometheus/prometheus.yml, the compose stack's
# (the compose host names become 127.0.0.1 and the ports above), with the same rules;
# Alertmanager uses config/alertmanager.yml and the collector config/collector.local.yaml.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROM_PORT=${PROM_PORT:-9090}
AM_PORT=${AM_PORT:-9093}
COLLECTOR_HTTP_PORT=${COLLECTOR_HTTP_PORT:-4318}
COLLECTOR_GRPC_PORT=${COLLECTOR_GRPC_PORT:-4317}
FLEXT_OBS_BIN=${FLEXT_OBS_BIN:-$ROOT/.venv/bin/flext-observability}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-prometheus}
ALERTMANAGER_BIN=${ALERTMANAGER_BIN:-prometheus-alertmanager}

usage() {
    sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# render_prometheus_config DIR: DIR/prometheus.yml (loopback targets) and DIR/rules (a
# link to prometheus/rules, so that the relative rule_files glob still matches).
render_prometheus_config() {
    local dir=$1
    mkdir -p "$dir"
    sed -E \
        -e "s/(^|[^[:alnum:]_.-])collector:4318([^[:digit:]]|$)/\\1127.0.0.1:${COLLECTOR_HTTP_PORT}\\2/g" \
        -e "s/(^|[^[:alnum:]_.-])prometheus:9090([^[:digit:]]|$)/\\1127.0.0.1:${PROM_PORT}\\2/g" \
        -e "s/(^|[^[:alnum:]_.-])alertmanager:9093([^[:digit:]]|$)/\\1127.0.0.1:${AM_PORT}\\2/g" \
        "$ROOT/prometheus/prometheus.yml" >"$dir/prometheus.yml"
    ln -sfn "$ROOT/prometheus/rules" "$dir/rules"
}

with_collector=1
case "${1:-}" in
    --render)
        [[ $# -eq 2 ]] || usage
        render_prometheus_config "$2"
        exit 0
        ;;
    --no-collector) with_collector=0 ;;
    "") ;;
    *) usage ;;
esac

for bin in "$PROMETHEUS_BIN" "$ALERTMANAGER_BIN"; do
    command -v "$bin" >/dev/null || {
        echo "monitoring-local: '$bin' not found (apt-get install prometheus prometheus-alertmanager)" >&2
        exit 1
    }
done
if [[ $with_collector -eq 1 && ! -x $FLEXT_OBS_BIN ]]; then
    echo "monitoring-local: '$FLEXT_OBS_BIN' not found (pip install -e . into .venv first)" >&2
    exit 1
fi

if [[ -n ${DATA_DIR:-} ]]; then
    data=$DATA_DIR
    keep_data=1
    mkdir -p "$data"
else
    data=$(mktemp -d -t flext-monitoring.XXXXXX)
    keep_data=0
fi

pids=()
stop_all() {
    trap - INT TERM EXIT
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    wait || true
    if [[ $keep_data -eq 0 ]]; then
        rm -rf "$data"
    fi
    echo "monitoring-local: stopped" >&2
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

render_prometheus_config "$data"

"$ALERTMANAGER_BIN" \
    --config.file="$ROOT/config/alertmanager.yml" \
    --storage.path="$data/alertmanager" \
    --web.listen-address="127.0.0.1:$AM_PORT" \
    --cluster.listen-address= &
pids+=($!)
echo "monitoring-local: alertmanager pid $! http://127.0.0.1:$AM_PORT" >&2

if [[ $with_collector -eq 1 ]]; then
    (
        cd "$ROOT"
        export FLEXT_OBS_SERVER__HTTP_PORT=$COLLECTOR_HTTP_PORT
        export FLEXT_OBS_SERVER__GRPC_PORT=$COLLECTOR_GRPC_PORT
        export FLEXT_OBS_QUEUE__PATH=$data/collector-queue
        export FLEXT_OBS_EXPORTERS__ALERTMANAGER__URLS="[\"http://127.0.0.1:$AM_PORT\"]"
        exec "$FLEXT_OBS_BIN" serve --config "$ROOT/config/collector.local.yaml"
    ) &
    pids+=($!)
    echo "monitoring-local: collector pid $! http://127.0.0.1:$COLLECTOR_HTTP_PORT" >&2
fi

"$PROMETHEUS_BIN" \
    --config.file="$data/prometheus.yml" \
    --storage.tsdb.path="$data/prometheus" \
    --web.listen-address="127.0.0.1:$PROM_PORT" \
    --web.enable-lifecycle &
pids+=($!)
echo "monitoring-local: prometheus pid $! http://127.0.0.1:$PROM_PORT" >&2
echo "monitoring-local: data in $data; Ctrl-C stops everything" >&2

# Returns when the first of them exits (or when a signal runs the traps above).
status=0
wait -n "${pids[@]}" || status=$?
echo "monitoring-local: a process exited (status $status); stopping the others" >&2
exit "$status"
