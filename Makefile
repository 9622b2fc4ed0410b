# The whole setup on a fresh Debian machine with Python 3.11: `make run`, `make validate`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := prometheus prometheus-alertmanager prometheus-pushgateway wrk chromium

.PHONY: run validate test lint type-check security peers bench soak fuzz-long install install-test system-deps clean monitoring-up monitoring-down monitoring-local kafka-up kafka-down

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
	@missing=""; for b in prometheus promtool prometheus-alertmanager amtool prometheus-pushgateway wrk chromium; do \
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

# bandit on src/ (every finding fails it; the few answered in code carry `# nosec <id>` and
# their reason), then pip-audit over the venv, which says loudly when no vulnerability
# service could be reached instead of passing as clean (README: Quality gates).
security: $(VENV)/.installed-test
	$(BIN)/bandit -q -r src
	$(BIN)/python scripts/audit_dependencies.py

# The real OpenTelemetry Collector and Jaeger, built from the Go module proxy (Go >= 1.26) into
# ~/.cache/flext-observability/peers and linked into .peers/bin; minutes the first time only.
peers:
	peers/build.sh

# What CI runs (.ci/run): lint, type-check, security, then the whole suite with coverage.
validate: lint type-check security test

# The whole suite with line coverage of src/, the daemons the tests start as processes
# included ([tool.coverage.*] in pyproject.toml); fails under 90%. TEST_WORKERS pytest-xdist
# workers share the modules (tests/conftest.py); TEST_WORKERS=0 runs them all in one process.
TEST_WORKERS ?= 2
test: install-test peers
	$(BIN)/pytest -q -n $(TEST_WORKERS) --cov=flext_observability --cov-report=term --cov-fail-under=90

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
	  $(BIN)/pytest -q -s --timeout=0 -p no:cacheprovider -k "$$part" tests/receivers/test_fuzz.py & \
	  pids="$$pids $$!"; done; \
	status=0; IFS=' '; for pid in $$pids; do wait $$pid || status=1; done; exit $$status
	OVERLOAD_SECONDS=$${OVERLOAD_SECONDS:-60} $(BIN)/pytest -q -s --timeout=0 tests/receivers/test_overload.py

# The monitoring stack: Docker (collector, Prometheus, Alertmanager, Jaeger, Grafana) ...
monitoring-up:
	docker compose -f docker-compose.monitoring.yml up -d --build

monitoring-down:
	docker compose -f docker-compose.monitoring.yml down

# ... or without Docker: Debian's Prometheus and Alertmanager with the same configs.
monitoring-local: install system-deps
	scripts/monitoring-local.sh

# A local Apache Kafka KRaft cluster (KAFKA_BROKERS brokers, data in KAFKA_DIR) for
# `queue.kind: kafka`; its bootstrap list is the last line printed.
KAFKA_DIR ?= .kafka
KAFKA_BROKERS ?= 3
kafka-up:
	scripts/kafka-local.sh start $(KAFKA_DIR) $(KAFKA_BROKERS)

kafka-down:
	scripts/kafka-local.sh stop $(KAFKA_DIR)

clean:
	rm -rf $(VENV) .flext-observability .pytest_cache .ruff_cache .peers .coverage .coverage.*
