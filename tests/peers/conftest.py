"""Fixtures for the real peers (.peers/bin/, built by `make peers`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from flext_observability import FlextObservabilityConfig, FlextObservabilityMasterFactory
from helpers.peers import Jaeger, OtelcolPrometheus, PeerMissing
from helpers.procs import ManagedProcess

P = TypeVar("P", bound=ManagedProcess)


def start_peer(make: Callable[[], P], reaper: list[ManagedProcess]) -> P:
    """``make()`` started, stopped at teardown; a missing binary fails the test saying to
    run `make peers` (never a skip: `make test` builds the peers first)."""
    try:
        process = make()
    except PeerMissing as exc:
        message = str(exc)
    else:
        reaper.append(process)
        return process.start()
    pytest.fail(message, pytrace=False)


@pytest.fixture
def jaeger(tmp_path: Path, process_reaper: list[ManagedProcess]) -> Jaeger:
    """A ready Jaeger v2 (all-in-one, memory storage) on free loopback ports."""
    return start_peer(lambda: Jaeger(tmp_path / "jaeger"), process_reaper)


@pytest.fixture
def otelcol_prometheus(tmp_path: Path, process_reaper: list[ManagedProcess]) -> OtelcolPrometheus:
    """A ready otelcol: OTLP receiver -> Prometheus exporter."""
    return start_peer(lambda: OtelcolPrometheus(tmp_path / "otelcol"), process_reaper)


@pytest.fixture
def sdk_factory() -> Iterator[Callable[[str, str], FlextObservabilityMasterFactory]]:
    """``sdk_factory(endpoint, service_name)``: the SDK's factory, flushing every 0.1 s;
    closed at teardown."""
    factories: list[FlextObservabilityMasterFactory] = []

    def make(endpoint: str, service_name: str) -> FlextObservabilityMasterFactory:
        config = FlextObservabilityConfig(endpoint=endpoint, service_name=service_name,
                                          flush_interval=0.1)
        factories.append(FlextObservabilityMasterFactory(config))
        return factories[-1]

    yield make
    for factory in factories:
        factory.close(timeout=1)
