# The whole setup on a fresh Debian machine with Python 3.11: `make run`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := prometheus prometheus-alertmanager prometheus-pushgateway wrk

.PHONY: run test lint type-check peers bench soak fuzz-long install install-test system-deps clean monitoring-up monitoring-down monitoring-local

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test system-deps

# Real Prometheus, Alertmanager, Pushgateway and promtool for the integration tests and bench.
system-deps:
	@missing=""; for b in prometheus promtool prometheus-alertmanager amtool prometheus-pushgateway wrk; do \
		command -v $$b >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi

run: install
	$(BIN)/flext-observability serve $(if $(CONFIG),--config $(CONFIG),)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench

# mypy in strict mode on src/ (settings in pyproject.toml's [tool.mypy]).
type-check: $(VENV)/.installed-test
	$(BIN)/mypy

# The real OpenTelemetry Collector and Jaeger, built from the Go module proxy (Go >= 1.26) into
# ~/.cache/flext-observability/peers and linked into .peers/bin; minutes the first time only.
peers:
	peers/build.sh

test: install-test peers
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: install-test peers
	$(BIN)/python -m bench

# Not in CI: 30 minutes (SOAK_MINUTES) at a steady rate, the span downstream flapping.
soak: install-test
	$(BIN)/python -m bench.soak

# Not in CI: the fuzzers with many more inputs (each in its own process, against its own
# daemon, all at once; FUZZ_SECONDS bounds each fuzzer's time), then the overload test for 60 s.
FUZZ_PARTS = schemathesis|mutated_otlp or deeply_nested|colliding|native_shapes
fuzz-long: install-test
	export FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100000} FUZZ_SCHEMA_EXAMPLES=$${FUZZ_SCHEMA_EXAMPLES:-300}; \
	parts='$(FUZZ_PARTS)'; IFS='|'; pids=; for part in $$parts; do \
	  $(BIN)/pytest -q -s --timeout=0 -p no:cacheprovider -k "$$part" tests/security/test_fuzz.py & \
	  pids="$$pids $$!"; done; \
	status=0; IFS=' '; for pid in $$pids; do wait $$pid || status=1; done; exit $$status
	OVERLOAD_SECONDS=$${OVERLOAD_SECONDS:-60} $(BIN)/pytest -q -s --timeout=0 tests/security/test_overload.py

# The monitoring stack: Docker (collector, Prometheus, Alertmanager, Jaeger, Grafana) ...
monitoring-up:
	docker compose -f docker-compose.monitoring.yml up -d --build

monitoring-down:
	docker compose -f docker-compose.monitoring.yml down

# ... or without Docker: Debian's Prometheus and Alertmanager with the same configs.
monitoring-local: install system-deps
	scripts/monitoring-local.sh

clean:
	rm -rf $(VENV) .flext-observability .pytest_cache .ruff_cache .peers
