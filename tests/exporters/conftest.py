"""Fixtures for exporter tests: an OTLP sink standing in for Jaeger, a second Alertmanager."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers.otlp_sink import OtlpSink
from helpers.procs import Alertmanager, start_alertmanager


@pytest.fixture
def otlp_sink() -> Iterator[OtlpSink]:
    """A started OTLP/gRPC + OTLP/HTTP trace receiver; stopped at teardown."""
    sink = OtlpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def second_alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    """Another real Alertmanager, beside the ``alertmanager`` fixture's."""
    if shutil.which("prometheus-alertmanager") is None:
        pytest.skip(reason="`prometheus-alertmanager` is not installed (Debian package)")
    work_dir = tmp_path / "alertmanager2"
    work_dir.mkdir()
    process = start_alertmanager(work_dir)
    yield process
    process.stop()


def _sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture
def scrape():
    """``scrape(daemon, name, **labels)``: that sample's value on /metrics, or None."""

    def read(daemon, name: str, **labels: str) -> float | None:
        text = httpx.get(f"{daemon.url}/metrics", timeout=10).text
        return _sample(text, name, **labels)

    return read
