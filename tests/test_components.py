"""The registry: every receiver and queue kind is built from its line, and the receivers
served by the collector process alone are left out of an ingest worker."""

from pathlib import Path

from prometheus_client import CollectorRegistry

from flext_observability.builder import build_ingest
from flext_observability.collector import Collector, build_queue
from flext_observability.components import QUEUES, RECEIVERS
from flext_observability.config import load_config
from flext_observability.pipeline.queue import MemoryQueue, SqliteQueue
from flext_observability.telemetry import SelfTelemetry
from flext_observability.workers.ipc import QueueView


async def _put(*_: object) -> None:
    raise AssertionError("no request is sent here")


def test_an_ingest_worker_builds_the_http_receivers_a_worker_serves():
    config = load_config(None, {})
    telemetry = SelfTelemetry(CollectorRegistry(auto_describe=False), None, 10)
    ingest = build_ingest(config, _put, telemetry, QueueView(10, 10, 1))
    assert list(ingest.receivers) == ["native", "otlp_http"]
    assert all(r.router is not None and r.listener is None for r in ingest.receivers.values())


def test_the_collector_process_builds_every_receiver_of_the_registry():
    config = load_config(None, {"FLEXT_OBS_QUEUE__KIND": "memory"})
    collector = Collector(config)
    assert list(collector.ingest.receivers) == list(RECEIVERS)
    assert list(collector.listeners) == ["otlp_grpc"]
    without_push = load_config(None, {"FLEXT_OBS_QUEUE__KIND": "memory",
                                      "FLEXT_OBS_EXPORTERS__PROMETHEUS__ENABLED": "false"})
    assert "pushgateway" not in Collector(without_push).ingest.receivers


def test_queue_kind_picks_the_registry_entry(tmp_path: Path):
    assert set(QUEUES) == {"disk", "memory", "kafka"}
    registry = CollectorRegistry(auto_describe=False)
    memory = load_config(None, {"FLEXT_OBS_QUEUE__KIND": "memory"})
    assert isinstance(build_queue(memory, registry), MemoryQueue)
    disk = load_config(None, {"FLEXT_OBS_QUEUE__PATH": str(tmp_path / "q")})
    assert isinstance(build_queue(disk, registry), SqliteQueue)
