"""Fixtures for the real peers (.peers/bin/, built by `make peers`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flext_observability import FlextObservabilityConfig, FlextObservabilityMasterFactory
from helpers.peers import Jaeger, PeerMissing
from helpers.procs import ManagedProcess


@pytest.fixture
def jaeger(tmp_path: Path, process_reaper: list[ManagedProcess]) -> Jaeger:
    """A ready Jaeger v2 (all-in-one, memory storage) on free loopback ports."""
    try:
        process = Jaeger(tmp_path / "jaeger")
    except PeerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    process_reaper.append(process)
    return process.start()


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
