"""The cost of a restart with the metric state persisted (disk queue).

100,000 series (10 counters of 10,000 series, 5 services) are posted and checkpointed;
the collector is stopped (SIGTERM) and started again on the same data dir: the figure is
the time from the start of the process until `/readyz` answers 200 with every series
restored, beside the same start on an empty data dir. Then the same after `kill -9`. The
restore alone (reading the rows, rebuilding the store) is also timed in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import yaml
from tests.helpers.exposition import sample, total
from tests.helpers.procs import ManagedProcess

from bench.common import free_ports, process
from flext_observability.exporters.prometheus.persist import StoreState
from flext_observability.exporters.prometheus.store import MetricStore
from flext_observability.pipeline.queue import Signal, SqliteQueue

SERIES = 100_000
METRICS = 10
SERVICES = 5
BATCH = 10_000


def bodies() -> Iterator[bytes]:
    per_metric = SERIES // METRICS
    per_service = SERIES // SERVICES
    for start in range(0, SERIES, BATCH):
        yield orjson.dumps([
            {"name": f"restart_m{i // per_metric}", "type": "counter", "value": 1,
             "service": f"svc{i // per_service}", "labels": {"n": str(i)}}
            for i in range(start, start + BATCH)
        ])


@contextlib.contextmanager
def started(config: Path, url: str, log: Path) -> Iterator[tuple[ManagedProcess, float]]:
    """The collector; yields (process, seconds from spawn to /readyz 200)."""
    args = [sys.executable, "-m", "flext_observability", "serve", "--config", str(config),
            "--log-level", "warning"]
    begun = time.monotonic()
    with process(args, f"{url}/readyz", log) as proc:
        yield proc, time.monotonic() - begun


def held_series(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=60).text
    return sum(total(text, f"restart_m{m}_total") for m in range(METRICS))


def wait_checkpointed(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/metrics", timeout=60).text
        if sample(text, "flext_collector_queue_items", signal="metrics") == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("metrics still queued (not checkpointed)")


async def restore_alone(directory: Path) -> tuple[float, int]:
    """Seconds to load the prometheus state rows and rebuild the store; series restored."""
    queue = SqliteQueue(directory, 10**9, 10**12, 5)
    queue.register("prometheus", [Signal.METRICS])
    await queue.start()
    store = MetricStore(SERIES, SERIES // METRICS, 3600.0,
                        max_series_per_service=SERIES // SERVICES)
    begun = time.monotonic()
    StoreState(store).restore(await queue.load_state("prometheus"))
    elapsed = time.monotonic() - begun
    await queue.shutdown()
    return elapsed, store.series_count


def run(seconds: int = 10) -> dict[str, float]:
    del seconds  # the figure is a time, not a rate
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="flext-bench-restart-") as tmp:
        port, grpc_port = free_ports(2)
        config = Path(tmp) / "collector.yaml"
        config.write_text(yaml.safe_dump({
            "server": {"host": "127.0.0.1", "http_port": port, "grpc_port": grpc_port},
            "queue": {"kind": "disk", "path": f"{tmp}/queue"},
            "exporters": {"prometheus": {"max_series": SERIES,
                                         "max_series_per_metric": SERIES // METRICS,
                                         "max_series_per_service": SERIES // SERVICES,
                                         "metric_expiration": "1h"}},
        }))
        url = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "collector.log"
        with started(config, url, log) as (_, empty):
            result["empty_start_s"] = empty
            for body in bodies():
                answer = httpx.post(f"{url}/api/v1/metrics", content=body, timeout=60,
                                    headers={"Content-Type": "application/json"})
                answer.raise_for_status()
            wait_checkpointed(url)
            stopping = time.monotonic()
        result["stop_s"] = time.monotonic() - stopping
        with started(config, url, log) as (proc, restart):
            result["restart_s"] = restart
            result["series_after_restart"] = held_series(url)
            proc.kill9()
        with started(config, url, log) as (_, crashed):
            result["kill9_restart_s"] = crashed
            result["series_after_kill9"] = held_series(url)
        result["restore_s"], restored = asyncio.run(restore_alone(Path(tmp) / "queue"))
        result["series_restored"] = restored
    return result


def report(result: dict[str, float]) -> str:
    return "\n".join([
        f"restart with {SERIES:,} series (disk queue, state checkpointed):",
        f"  /readyz 200 after a SIGTERM restart   {result['restart_s']:>6.2f} s"
        f"  ({result['series_after_restart']:,.0f} series back)",
        f"  /readyz 200 after a kill -9 restart   {result['kill9_restart_s']:>6.2f} s"
        f"  ({result['series_after_kill9']:,.0f} series back)",
        f"  /readyz 200 on an empty data dir      {result['empty_start_s']:>6.2f} s",
        f"  the restore alone (read + rebuild)    {result['restore_s']:>6.2f} s"
        f"  ({result['series_restored']:,.0f} series)",
        f"  SIGTERM to exit with {SERIES:,} series  {result['stop_s']:>6.2f} s",
    ])
