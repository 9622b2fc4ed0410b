#!/usr/bin/env bash
# An Apache Kafka KRaft cluster on loopback, from Kafka's own jars (CONTRACT §9).
#
#   scripts/kafka-local.sh start DIR [BROKERS]   start BROKERS (default 3) combined
#                                                broker+controller nodes, data under DIR
#   scripts/kafka-local.sh stop DIR              stop every broker of DIR
#   scripts/kafka-local.sh restart DIR I...      start broker I (or several) again after it
#                                                was killed or stopped
#   scripts/kafka-local.sh libs                  print the jar directory (resolving it once)
#
# The jars are resolved from Maven Central by `mvn dependency:copy-dependencies` over
# peers/kafka/pom.xml, once, into $FLEXT_PEERS_CACHE/kafka-<version>-<manifest hash>/libs
# (`make peers` does it too). Each broker writes its pid to DIR/broker-<i>.pid and its port
# to DIR/broker-<i>.port; the last line printed is `bootstrap=HOST:PORT,...`.
#
#   KAFKA_PORT_BASE   broker i listens on BASE+2i-2, its controller on BASE+2i-1
#                     (default: free ports picked at start)
#   KAFKA_HEAP        JVM heap of each broker (default 256m)
#   KAFKA_START_TIMEOUT seconds to wait for the cluster to serve (default 120)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${FLEXT_PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flext-observability/peers}
manifest=$root/peers/kafka/pom.xml
host=127.0.0.1

die() {
	echo "kafka-local: $*" >&2
	exit 1
}

libs_dir() {
	local version key dir work
	version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$manifest")
	[ -n "$version" ] || die "no kafka.version in $manifest"
	key=kafka-$version-$(sha256sum "$manifest" | cut -c1-12)
	dir=$cache/$key
	if [ ! -f "$dir/libs/.complete" ]; then
		command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is needed to resolve Kafka's jars"
		mkdir -p "$cache"
		exec 8>"$cache/.lock-kafka"
		flock 8
		if [ ! -f "$dir/libs/.complete" ]; then
			work=$(mktemp -d "$cache/.resolve-kafka.XXXXXX")
			echo "kafka-local: resolving Apache Kafka $version from Maven Central" >&2
			if ! mvn -q -f "$manifest" dependency:copy-dependencies -DincludeScope=runtime \
				-DoutputDirectory="$work/libs" >"$work/resolve.log" 2>&1; then
				tail -n 30 "$work/resolve.log" >&2
				die "resolving Kafka's jars failed; log: $work/resolve.log"
			fi
			rm -rf "$dir"
			mkdir -p "$dir"
			mv "$work/libs" "$dir/libs"
			touch "$dir/libs/.complete"
			rm -rf "$work"
		fi
		exec 8>&-
	fi
	echo "$dir/libs"
}

free_ports() {
	python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# java_run DIR ARGS...: Java on Kafka's jars, its logs in DIR (`exec java_run` in a background
# subshell makes the JVM that subshell's process: its pid is `$!`).
java_run() {
	local dir=$1
	shift
	exec java -Xmx"${KAFKA_HEAP:-256m}" -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
		-Djava.awt.headless=true -Dlog4j2.configurationFile="$root/peers/kafka/log4j2.properties" \
		-Dkafka.logs.dir="$dir" -cp "$libs/*" "$@"
}

# write_props DIR I N PORTS... : the server.properties of broker I of N.
write_props() {
	local dir=$1 i=$2 n=$3
	shift 3
	local ports=("$@") voters="" j rf isr
	for ((j = 1; j <= n; j++)); do
		voters+="${voters:+,}$j@$host:${ports[$((2 * j - 1))]}"
	done
	rf=$((n < 3 ? n : 3))
	isr=$((n < 2 ? n : 2))
	mkdir -p "$dir/broker-$i/data"
	cat >"$dir/broker-$i/server.properties" <<EOF
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://$host:${ports[$((2 * i - 2))]},CONTROLLER://$host:${ports[$((2 * i - 1))]}
advertised.listeners=PLAINTEXT://$host:${ports[$((2 * i - 2))]}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/broker-$i/data
num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
log.flush.interval.messages=9223372036854775807
auto.create.topics.enable=false
# The log cleaner's buffer is one array (128 MiB by default): in a 256 MiB heap it
# sometimes could not be allocated and the broker died starting (OutOfMemoryError).
log.cleaner.dedupe.buffer.size=16777216
EOF
}

launch() {
	local dir=$1 i=$2
	(java_run "$dir/broker-$i" kafka.Kafka "$dir/broker-$i/server.properties") \
		>"$dir/broker-$i/stdout.log" 2>&1 &
	echo $! >"$dir/broker-$i.pid"
}

# wait_port PORT PID: until the broker answers on PORT, or its process ended.
wait_port() {
	local port=$1 pid=$2 deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120}))
	while ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
		kill -0 "$pid" 2>/dev/null || return 1
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.2
	done
}

start() {
	local dir=$1 n=${2:-3} i ports cluster
	[ "$n" -ge 1 ] || die "BROKERS must be at least 1"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	for ((i = 1; i <= n; i++)); do
		if [ -f "$dir/broker-$i.pid" ] && kill -0 "$(cat "$dir/broker-$i.pid")" 2>/dev/null; then
			die "broker $i of $dir is running already"
		fi
	done
	libs=$(libs_dir)
	if [ -n "${KAFKA_PORT_BASE:-}" ]; then
		ports=()
		for ((i = 0; i < 2 * n; i++)); do ports+=($((KAFKA_PORT_BASE + i))); done
	else
		read -r -a ports <<<"$(free_ports $((2 * n)))"
	fi
	cluster=$( (java_run "$dir" kafka.tools.StorageTool random-uuid) | tail -n 1)
	echo "$n" >"$dir/brokers"
	for ((i = 1; i <= n; i++)); do
		write_props "$dir" "$i" "$n" "${ports[@]}"
		(java_run "$dir/broker-$i" kafka.tools.StorageTool format --ignore-formatted \
			--cluster-id "$cluster" --config "$dir/broker-$i/server.properties") \
			>"$dir/broker-$i/format.log" 2>&1 || {
			cat "$dir/broker-$i/format.log" >&2
			die "formatting the storage of broker $i failed"
		}
		echo "${ports[$((2 * i - 2))]}" >"$dir/broker-$i.port"
	done
	for ((i = 1; i <= n; i++)); do launch "$dir" "$i"; done
	for ((i = 1; i <= n; i++)); do
		wait_port "$(cat "$dir/broker-$i.port")" "$(cat "$dir/broker-$i.pid")" || {
			tail -n 20 "$dir/broker-$i/stdout.log" "$dir/broker-$i/server.log" >&2 || true
			stop "$dir"
			die "broker $i did not start"
		}
	done
	bootstrap "$dir"
}

bootstrap() {
	local dir=$1 n i list=""
	n=$(cat "$dir/brokers")
	for ((i = 1; i <= n; i++)); do list+="${list:+,}$host:$(cat "$dir/broker-$i.port")"; done
	echo "bootstrap=$list"
}

stop() {
	local dir=$1 pidfile pid pids=() deadline
	for pidfile in "$dir"/broker-*.pid; do
		[ -f "$pidfile" ] || continue
		pid=$(cat "$pidfile")
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			pids+=("$pid")
		fi
	done
	deadline=$((SECONDS + 30))
	for pid in "${pids[@]}"; do
		while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
		kill -9 "$pid" 2>/dev/null || true
	done
	echo "kafka-local: stopped ${#pids[@]} broker(s) of $dir"
}

# restart DIR I...: start these brokers again (together: one alone cannot start while a
# majority of the controllers is down).
restart() {
	local dir=$1 i
	shift
	dir=$(cd "$dir" && pwd)
	for i in "$@"; do
		[ -f "$dir/broker-$i/server.properties" ] || die "no broker $i in $dir"
		if kill -0 "$(cat "$dir/broker-$i.pid")" 2>/dev/null; then
			die "broker $i of $dir is running"
		fi
	done
	libs=$(libs_dir)
	for i in "$@"; do launch "$dir" "$i"; done
	for i in "$@"; do
		wait_port "$(cat "$dir/broker-$i.port")" "$(cat "$dir/broker-$i.pid")" || {
			tail -n 20 "$dir/broker-$i/server.log" >&2 || true
			die "broker $i did not start again"
		}
	done
	bootstrap "$dir"
}

case ${1:-} in
start) [ $# -ge 2 ] || die "usage: $0 start DIR [BROKERS]"; start "$2" "${3:-3}" ;;
stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
restart) [ $# -ge 3 ] || die "usage: $0 restart DIR I..."; restart "${@:2}" ;;
libs) libs_dir ;;
*) die "usage: $0 start DIR [BROKERS] | stop DIR | restart DIR I... | libs" ;;
esac
