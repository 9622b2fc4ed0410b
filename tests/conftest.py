"""Shared fixtures: the collector and its real peers as processes on free loopback ports.

Every process a fixture starts is stopped at teardown, also when the test fails.
Tests that use any of these fixtures are marked ``integration`` automatically, so
``pytest -m "not integration"`` runs only the in-process tests.

Under pytest-xdist (``make test`` runs ``-n``), a worker gets a whole module at a time, so a
module-scoped daemon starts once, and all of tests/kafka together, so one Kafka cluster
serves them (``pytest_xdist_make_scheduler`` below).
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.procs import (
    Alertmanager,
    Daemon,
    ManagedProcess,
    Prometheus,
    Pushgateway,
    start_alertmanager,
    start_prometheus,
    start_pushgateway,
)

INTEGRATION_FIXTURES = frozenset(
    {"daemon_factory", "prometheus_factory", "alertmanager", "pushgateway"}
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: starts real processes (the daemon, Prometheus, Alertmanager)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


KAFKA_TESTS = "tests/kafka/"
# The scopes that took longest (make test, 27 Nov 2026: 230 s down to 50 s), started first
# so that none of them is left to run alone at the end; the others follow, most tests first.
LONGEST_FIRST = (
    "tests/receivers/test_fuzz.py",
    KAFKA_TESTS,
    "tests/exporters/prometheus/test_persistence.py",
    "tests/workers/test_ingest_workers.py",
    "tests/exporters/prometheus/test_admission.py",
    "tests/receivers/test_hardening.py",
    "tests/receivers/test_pushgateway.py",
    "tests/receivers/test_limits.py",
    "tests/exporters/prometheus/test_scrape.py",
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scheduling by scope, a scope being a test module, or all of tests/kafka (its
    session-scoped cluster of three brokers is started once, in one worker)."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return KAFKA_TESTS if nodeid.startswith(KAFKA_TESTS) else nodeid.split("::", 1)[0]

        def _assign_work_unit(self, node: Any) -> None:
            def rank(scope: str) -> tuple[int, int]:
                known = LONGEST_FIRST.index(scope) if scope in LONGEST_FIRST else len(
                    LONGEST_FIRST)
                return known, -len(self.workqueue[scope])

            self.workqueue.move_to_end(min(self.workqueue, key=rank), last=False)
            super()._assign_work_unit(node)

    return ModuleScheduling(config, log)


def require_binary(name: str) -> None:
    if shutil.which(name) is None:
        pytest.skip(reason=f"`{name}` is not installed (Debian package {name!r})")


@pytest.fixture
def process_reaper() -> Iterator[list[ManagedProcess]]:
    """Append processes to the list; all are stopped at teardown, newest first."""
    processes: list[ManagedProcess] = []
    yield processes
    for process in reversed(processes):
        process.stop()


@pytest.fixture
def daemon_factory(tmp_path: Path, process_reaper: list[ManagedProcess]):
    """``daemon_factory(config_overrides=None, data_dir=None, env=None) -> Daemon``, started.

    Each daemon gets its own directory under ``tmp_path`` (config, log, default data dir).
    """
    counter = itertools.count(1)

    def make(config_overrides=None, data_dir=None, env=None) -> Daemon:
        daemon = Daemon(
            tmp_path / f"daemon{next(counter)}",
            config_overrides=config_overrides,
            data_dir=data_dir,
            env=env,
        )
        process_reaper.append(daemon)
        return daemon.start()

    return make


@pytest.fixture
def prometheus_factory(tmp_path: Path, process_reaper: list[ManagedProcess]):
    """``prometheus_factory(targets, **start_prometheus_kwargs) -> Prometheus``, ready."""
    require_binary("prometheus")
    counter = itertools.count(1)

    def make(targets: list[str], **kwargs) -> Prometheus:
        work_dir = tmp_path / f"prometheus{next(counter)}"
        work_dir.mkdir()
        prometheus = start_prometheus(work_dir, targets, **kwargs)
        process_reaper.append(prometheus)
        return prometheus

    return make


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    """A ready Alertmanager routing everything to a receiver that notifies nobody."""
    require_binary("prometheus-alertmanager")
    work_dir = tmp_path / "alertmanager"
    work_dir.mkdir()
    process = start_alertmanager(work_dir)
    yield process
    process.stop()


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[Pushgateway]:
    """A ready Pushgateway; push to ``f"{pushgateway.url}/metrics/job/<job>"``."""
    require_binary("prometheus-pushgateway")
    work_dir = tmp_path / "pushgateway"
    work_dir.mkdir()
    process = start_pushgateway(work_dir)
    yield process
    process.stop()
