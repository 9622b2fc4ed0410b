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
#   SCRAPE_INTERVAL      replaces every scrape_interval of the rendered config (e.g. 1s);
#                        default: the shipped config's (15s)
#   EVAL_INTERVAL        replaces its evaluation_interval (e.g. 1s); default: shipped (15s)
#   RULES_FOR_OVERRIDE   renders copies of the rule files with every alert's `for:` set to
#                        this duration (e.g. 5s, for tests); default: the shipped rules as is
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

# The overrides go into sed expressions and YAML: Prometheus durations only (1s, 1m30s).
for var in SCRAPE_INTERVAL EVAL_INTERVAL RULES_FOR_OVERRIDE; do
    value=${!var:-}
    if [[ -n $value && ! $value =~ ^([0-9]+(ms|s|m|h|d|w|y))+$ ]]; then
        echo "monitoring-local: $var=$value is not a Prometheus duration (e.g. 1s, 5m)" >&2
        exit 2
    fi
done

usage() {
    # The header comment: from line 2 to the first line that is not a comment.
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
}

# render_prometheus_config DIR: DIR/prometheus.yml (loopback targets; intervals from
# SCRAPE_INTERVAL / EVAL_INTERVAL if set) and DIR/rules, so that the relative rule_files
# glob still matches: a link to prometheus/rules, or, with RULES_FOR_OVERRIDE, copies of
# its files with every `for:` replaced.
render_prometheus_config() {
    local dir=$1
    local edits=(
        -e "s/(^|[^[:alnum:]_.-])collector:4318([^[:digit:]]|$)/\\1127.0.0.1:${COLLECTOR_HTTP_PORT}\\2/g"
        -e "s/(^|[^[:alnum:]_.-])prometheus:9090([^[:digit:]]|$)/\\1127.0.0.1:${PROM_PORT}\\2/g"
        -e "s/(^|[^[:alnum:]_.-])alertmanager:9093([^[:digit:]]|$)/\\1127.0.0.1:${AM_PORT}\\2/g"
    )
    if [[ -n ${SCRAPE_INTERVAL:-} ]]; then
        edits+=(-e "s/^([[:space:]]*scrape_interval:[[:space:]]*)[^[:space:]#]+/\\1${SCRAPE_INTERVAL}/")
    fi
    if [[ -n ${EVAL_INTERVAL:-} ]]; then
        edits+=(-e "s/^([[:space:]]*evaluation_interval:[[:space:]]*)[^[:space:]#]+/\\1${EVAL_INTERVAL}/")
    fi
    mkdir -p "$dir"
    sed -E "${edits[@]}" "$ROOT/prometheus/prometheus.yml" >"$dir/prometheus.yml"
    # Without a trailing slash, rm removes a link itself, not what it points to.
    rm -rf "$dir/rules"
    if [[ -n ${RULES_FOR_OVERRIDE:-} ]]; then
        mkdir "$dir/rules"
        local file
        for file in "$ROOT"/prometheus/rules/*.yml; do
            sed -E "s/^([[:space:]]*)for:[[:space:]]*[^[:space:]#]+/\\1for: ${RULES_FOR_OVERRIDE}/" \
                "$file" >"$dir/rules/$(basename "$file")"
        done
    else
        ln -sfn "$ROOT/prometheus/rules" "$dir/rules"
    fi
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
