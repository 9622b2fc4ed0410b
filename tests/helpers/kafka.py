"""A real Apache Kafka KRaft cluster for tests, run by scripts/kafka-local.sh (CONTRACT §9)."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

from .procs import REPO_ROOT, poll

SCRIPT = REPO_ROOT / "scripts" / "kafka-local.sh"


class KafkaCluster:
    """``brokers`` combined broker+controller nodes with their data under ``directory``."""

    def __init__(self, directory: Path, brokers: int = 3) -> None:
        self.directory = Path(directory)
        self.brokers = brokers
        self.bootstrap: list[str] = []

    def _run(self, *args: str, timeout: float = 240) -> str:
        done = subprocess.run(
            [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"kafka-local.sh {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def start(self) -> KafkaCluster:
        out = self._run("start", str(self.directory), str(self.brokers))
        last = out.strip().splitlines()[-1]
        assert last.startswith("bootstrap="), out
        self.bootstrap = last.removeprefix("bootstrap=").split(",")
        return self

    def stop(self) -> None:
        self._run("stop", str(self.directory))

    def pid(self, broker: int) -> int:
        return int((self.directory / f"broker-{broker}.pid").read_text())

    def running(self, broker: int) -> bool:
        try:
            os.kill(self.pid(broker), 0)
        except (OSError, ValueError):
            return False
        return True

    def kill9(self, broker: int) -> None:
        """SIGKILL broker i (from 1) and wait until it is gone."""
        os.kill(self.pid(broker), signal.SIGKILL)
        poll(lambda: self.running(broker), lambda alive: not alive, timeout=20, interval=0.05,
             what=f"broker {broker} gone")

    def restart(self, *brokers: int) -> None:
        self._run("restart", str(self.directory), *map(str, brokers))


def kafka_queue(
    cluster: KafkaCluster, prefix: str | None = None, **settings: Any
) -> dict[str, Any]:
    """`queue:` overrides for a collector on the cluster; its own topics (a fresh prefix)."""
    prefix = prefix or f"t{uuid.uuid4().hex[:8]}"
    topics = {kind: f"{prefix}_{kind}" for kind in
              ("spans", "metrics", "logs", "native_metrics", "alerts", "health")}
    return {"queue": {"kind": "kafka", "kafka": {
        "brokers": cluster.bootstrap, "topics": topics, "group_prefix": prefix,
        "replication_factor": 3, "min_insync_replicas": 2, "partitions": 3,
        "produce_timeout": "5s", **settings,
    }}}


def ensure_running(cluster: KafkaCluster) -> None:
    """Start again every broker that is not running (together)."""
    down = [b for b in range(1, cluster.brokers + 1) if not cluster.running(b)]
    if down:
        cluster.restart(*down)
