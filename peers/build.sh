#!/usr/bin/env bash
# `make peers`: builds the real OpenTelemetry Collector and Jaeger v2 from the Go module proxy
# (no prebuilt binary is downloaded; nothing of theirs is committed but the manifests in peers/),
# caches each binary outside the work tree under <name>-<pinned version>-<manifest hash>/, and
# links it into .peers/bin/. A cached binary is reused: only the first build takes minutes.
#
#   FLEXT_PEERS_CACHE  cache directory (default ${XDG_CACHE_HOME:-~/.cache}/flext-observability/peers)
#   PEERS              which peers to build (default "otelcol jaeger kafka")
#
# kafka: Apache Kafka's jars, resolved from Maven Central by scripts/kafka-local.sh (Maven,
# peers/kafka/pom.xml) into the same cache; no Go needed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${FLEXT_PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flext-observability/peers}
bin_dir=$root/.peers/bin
min_go_minor=26

die() {
	echo "peers: $*" >&2
	exit 1
}

check_go() {
	command -v go >/dev/null 2>&1 || die "Go >= 1.$min_go_minor is needed to build the peers: go is not on PATH"
	local version minor
	version=$(go env GOVERSION)
	minor=$(echo "$version" | sed -n 's/^go1\.\([0-9][0-9]*\).*/\1/p')
	[ -n "$minor" ] && [ "$minor" -ge "$min_go_minor" ] ||
		die "Go >= 1.$min_go_minor is needed to build the peers, found $version"
}

manifest_hash() {
	cat "$@" | sha256sum | cut -c1-12
}

# install NAME DIR: link DIR/NAME as .peers/bin/NAME.
install() {
	mkdir -p "$bin_dir"
	ln -sfn "$2/$1" "$bin_dir/$1"
	echo "peers: .peers/bin/$1 -> $2/$1"
}

# build NAME VERSION MANIFEST... : runs build_NAME WORK_DIR (which leaves WORK_DIR/NAME) unless the
# cache has that key already; the binary only lands in the cache once it is whole.
build() {
	local name=$1 version=$2
	shift 2
	local key dir work started seconds
	key=$name-$version-$(manifest_hash "$@")
	dir=$cache/$key
	if [ -x "$dir/$name" ]; then
		install "$name" "$dir"
		return
	fi
	mkdir -p "$cache"
	work=$(mktemp -d "$cache/.build-$name.XXXXXX")
	echo "peers: building $name $version (the first build takes minutes; log in $work/build.log)"
	started=$(date +%s)
	if ! "build_$name" "$work" >"$work/build.log" 2>&1; then
		tail -n 30 "$work/build.log" >&2
		die "building $name $version failed; full log: $work/build.log"
	fi
	seconds=$(($(date +%s) - started))
	mkdir -p "$dir"
	mv "$work/$name" "$dir/$name"
	echo "$seconds" >"$dir/build-seconds"
	rm -rf "$work"
	echo "peers: built $name $version in ${seconds}s"
	install "$name" "$dir"
}

# The official builder, at the release the manifest pins, generates the sources in WORK/src and
# compiles them there. Its `go mod tidy` also resolves the tests of every component, and the
# file exporter's tests import a module the Go module proxy does not serve at this release
# (extension/encoding/otlpencodingextension v0.165.1): -e lets tidy go on past what only
# those tests need; the build itself needs none of it.
build_otelcol() {
	local work=$1
	(cd "$work" && GOFLAGS="-e ${GOFLAGS:-}" go run "go.opentelemetry.io/collector/cmd/builder@v$otelcol_version" \
		--config "$otelcol_manifest")
	mv "$work/src/otelcol" "$work/otelcol"
}

# Jaeger's own main package, from the module pinned (with every dependency) by peers/jaeger/go.mod
# and go.sum.
build_jaeger() {
	local work=$1
	go build -C "$root/peers/jaeger" -mod=readonly -trimpath -o "$work/jaeger" \
		github.com/jaegertracing/jaeger/cmd/jaeger
}

otelcol_manifest=$root/peers/otelcol/builder-config.yaml
otelcol_version=$(sed -n 's/^  version: *//p' "$otelcol_manifest")
jaeger_version=$(awk '$1 == "github.com/jaegertracing/jaeger" { print $2; exit }' "$root/peers/jaeger/go.mod")
[ -n "$otelcol_version" ] || die "no dist.version in $otelcol_manifest"
[ -n "$jaeger_version" ] || die "no github.com/jaegertracing/jaeger requirement in peers/jaeger/go.mod"

# One build at a time per cache (make peers from two shells, or two work trees).
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

peers=${PEERS:-otelcol jaeger kafka}
case " $peers " in *" otelcol "* | *" jaeger "*) check_go ;; esac
for peer in $peers; do
	case $peer in
	kafka) FLEXT_PEERS_CACHE=$cache "$root/scripts/kafka-local.sh" libs >/dev/null ;;
	otelcol) build otelcol "v$otelcol_version" "$otelcol_manifest" ;;
	jaeger) build jaeger "$jaeger_version" "$root/peers/jaeger/go.mod" "$root/peers/jaeger/go.sum" ;;
	*) die "unknown peer $peer (otelcol, jaeger, kafka)" ;;
	esac
done
