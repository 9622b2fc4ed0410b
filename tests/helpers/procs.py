"""Real processes on free loopback ports, for integration tests.

Every helper starts a real binary (Prometheus, Alertmanager, Pushgateway, or the
collector itself) with its output captured in a log file, waits until it answers,
and can always be stopped: ``stop()`` is safe twice and after a crash.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import httpx
import yaml

POLL_SECONDS = 0.05
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different TCP ports on 127.0.0.1 that were free a moment ago (held open
    together while chosen, so the kernel cannot hand out one twice)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def http_get(url: str, **params: Any) -> httpx.Response:
    """GET on loopback, never through a proxy from the environment."""
    return httpx.get(url, params=params or None, timeout=5, trust_env=False)


def wait_http(url: str, timeout: float = 20, process: ManagedProcess | None = None) -> None:
    """Poll ``url`` every 50 ms until it answers 200.

    Raises ``RuntimeError`` with the tail of the process's log if the process dies
    or the deadline passes first.
    """
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        if process is not None and process.returncode is not None:
            raise RuntimeError(
                f"{process.name} exited with {process.returncode} before {url} answered:\n"
                f"{process.log_tail()}"
            )
        try:
            response = http_get(url)
        except httpx.TransportError as exc:
            last = repr(exc)
        else:
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        if time.monotonic() >= deadline:
            tail = process.log_tail() if process is not None else ""
            raise RuntimeError(f"{url} not ready after {timeout}s ({last}):\n{tail}")
        time.sleep(POLL_SECONDS)


def poll(
    fetch: Callable[[], Any],
    predicate: Callable[[Any], bool],
    timeout: float,
    interval: float,
    what: str,
) -> Any:
    """Call ``fetch`` until ``predicate`` holds for its result; return that result."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if predicate(result):
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: condition not met after {timeout}s; last: {result!r}")
        time.sleep(interval)


def _host_port(address: str) -> str:
    """``http://127.0.0.1:9090/`` or ``127.0.0.1:9090`` -> ``127.0.0.1:9090``."""
    return address.split("://", 1)[-1].rstrip("/")


# How long a started process may take to answer its ready URL: a deadline, not a wait. A
# daemon with ingest workers imports the app three times; on a loaded 2-core machine, and
# more so under coverage (`make test`), that can take past 20 s.
READY_TIMEOUT = 60.0


class ManagedProcess:
    """A child process whose stdout and stderr go to ``<log_dir>/<name>.log``."""

    def __init__(
        self,
        argv: Sequence[str],
        log_dir: Path,
        name: str,
        env: Mapping[str, str] | None = None,
        ready_url: str | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.argv = [str(arg) for arg in argv]
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self.env = dict(env or {})
        self.ready_url = ready_url
        self.ready_timeout = ready_timeout
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        """Launch the process and, if ``ready_url`` is set, wait until it answers 200."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.argv}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        if self.ready_url is not None:
            try:
                wait_http(self.ready_url, self.ready_timeout, process=self)
            except BaseException:
                self.stop()
                raise
        return self

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); the exit code (-N for signal N) after."""
        return None if self._popen is None else self._popen.poll()

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGABRT (a daemon's faulthandler writes
        every thread's stack to its log; a Go peer dumps its goroutines) and SIGKILL. Safe
        twice and without start."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._popen.send_signal(signal.SIGABRT)
                try:
                    self._popen.wait(3)
                except subprocess.TimeoutExpired:
                    self._popen.kill()
                    self._popen.wait()
        return self._popen.returncode

    def kill9(self) -> None:
        """SIGKILL now and reap: a crash, with no chance to flush or drain."""
        if self.running:
            assert self._popen is not None
            self._popen.kill()
            self._popen.wait()

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` lines of the captured stdout and stderr."""
        if not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.pid} rc={self.returncode}>"


class Prometheus(ManagedProcess):
    """A real Prometheus server; ``url`` is ``http://127.0.0.1:PORT``.

    Prometheus syncs new targets to its scrape loops every 5 s, so the first sample
    lands about 5 s after ``/-/ready``: wait with ``wait_for``, not a sleep.
    """

    def __init__(
        self, work_dir: Path, config: dict[str, Any], args: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = work_dir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        super().__init__(
            [
                "prometheus",
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={work_dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *args,
            ],
            work_dir,
            "prometheus",
            ready_url=f"{self.url}/-/ready",
        )

    def _api(self, path: str, **params: Any) -> Any:
        response = http_get(f"{self.url}/api/v1/{path}", **params)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus /api/v1/{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        data = self._api("query", query=expr)
        if data["resultType"] != "vector":
            raise RuntimeError(f"{expr!r} gave a {data['resultType']}, not a vector")
        return data["result"]

    def wait_for(
        self,
        expr: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 20,
    ) -> list[dict[str, Any]]:
        """Re-run ``query(expr)`` every 0.2 s until ``predicate(result)``; return the result."""
        try:
            return poll(lambda: self.query(expr), predicate, timeout, 0.2, f"query {expr!r}")
        except TimeoutError as exc:
            scrapes = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in self.targets()]
            raise TimeoutError(f"{exc}\ntargets: {scrapes}") from None

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets with ``health``, ``lastError``, ``labels``."""
        return self._api("targets")["activeTargets"]

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts from the rule files: pending and firing, with labels and ``state``."""
        return self._api("alerts")["alerts"]


def start_prometheus(
    tmp_dir: Path,
    targets: list[str],
    scrape_interval: str = "1s",
    honor_labels: bool = True,
    rule_files: list[Path] | None = None,
    alertmanagers: list[str] | None = None,
    evaluation_interval: str = "1s",
) -> Prometheus:
    """Start Prometheus scraping ``targets`` (``host:port`` or URLs) at ``/metrics``.

    The job is ``flext``; ``alertmanagers`` (``host:port`` or URLs) receive the alerts
    of ``rule_files``. Returns once ``/-/ready`` answers 200.
    """
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "scrape_configs": [
            {
                "job_name": "flext",
                "metrics_path": "/metrics",
                "honor_labels": honor_labels,
                "static_configs": [{"targets": [_host_port(t) for t in targets]}],
            }
        ],
    }
    if rule_files:
        config["rule_files"] = [str(path) for path in rule_files]
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [
                {"static_configs": [{"targets": [_host_port(a) for a in alertmanagers]}]}
            ]
        }
    return Prometheus(Path(tmp_dir), config).start()


ALERTMANAGER_CONFIG = {
    "route": {
        "receiver": "null",
        "group_wait": "1s",
        "group_interval": "1s",
        "repeat_interval": "1h",
    },
    "receivers": [{"name": "null"}],
}


class Alertmanager(ManagedProcess):
    """A real Alertmanager (gossip off); ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, work_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = work_dir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(ALERTMANAGER_CONFIG, sort_keys=False))
        super().__init__(
            [
                "prometheus-alertmanager",
                f"--config.file={self.config_path}",
                f"--storage.path={work_dir / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            work_dir,
            "alertmanager",
            ready_url=f"{self.url}/-/ready",
        )

    def alerts(
        self,
        active: bool = True,
        silenced: bool = True,
        inhibited: bool = True,
        unprocessed: bool = True,
        filter: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: ``[{"labels", "annotations", "startsAt", "endsAt", "status"}]``.

        Alertmanager never lists resolved alerts here (``endsAt`` in the past): an alert
        that was resolved simply disappears. ``filter`` takes matchers like
        ``'alertname="X"'``.
        """
        params: dict[str, Any] = {
            "active": str(active).lower(),
            "silenced": str(silenced).lower(),
            "inhibited": str(inhibited).lower(),
            "unprocessed": str(unprocessed).lower(),
        }
        if filter:
            params["filter"] = filter
        response = http_get(f"{self.url}/api/v2/alerts", **params)
        response.raise_for_status()
        return response.json()

    def wait_for(
        self,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 20,
        filter: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Re-read ``alerts(filter=filter)`` every 0.2 s until ``predicate(alerts)``."""
        return poll(
            lambda: self.alerts(filter=filter), predicate, timeout, 0.2, "alertmanager alerts"
        )


def start_alertmanager(tmp_dir: Path) -> Alertmanager:
    """Start Alertmanager with one route to a receiver that notifies nobody."""
    return Alertmanager(Path(tmp_dir)).start()


class Pushgateway(ManagedProcess):
    """A real Pushgateway; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, work_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            # Debian's build persists to /var/lib/prometheus by default: memory only here.
            ["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{self.port}",
             "--persistence.file="],
            work_dir,
            "pushgateway",
            ready_url=f"{self.url}/-/ready",
        )


def start_pushgateway(tmp_dir: Path) -> Pushgateway:
    """Start a Pushgateway (no persistence); push to ``{url}/metrics/job/<job>``."""
    return Pushgateway(Path(tmp_dir)).start()


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; nested mappings merge, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


DAEMON_COMMAND = (sys.executable, "-m", "flext_observability", "serve")


class Daemon(ManagedProcess):
    """The collector under test, as a process, with its config written to a YAML file.

    The config is ``server`` on 127.0.0.1 with free HTTP and gRPC ports and a disk
    queue in ``data_dir``, deep-merged with ``config_overrides``. ``restart()`` keeps
    the config, ports and data dir. ``command`` replaces ``python -m
    flext_observability serve`` (``--config FILE`` is appended either way).
    """

    def __init__(
        self,
        work_dir: Path,
        config_overrides: Mapping[str, Any] | None = None,
        data_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        command: Sequence[str] = DAEMON_COMMAND,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        work_dir = Path(work_dir)
        self.data_dir = Path(data_dir) if data_dir is not None else work_dir / "data"
        http_port, grpc_port = free_ports(2)
        defaults = {
            "server": {"host": "127.0.0.1", "http_port": http_port, "grpc_port": grpc_port},
            "queue": {"kind": "disk", "path": str(self.data_dir)},
        }
        self.config = deep_merge(defaults, config_overrides or {})
        server = self.config["server"]
        self.url = f"http://{server['host']}:{server['http_port']}"
        self.grpc_target = f"{server['host']}:{server['grpc_port']}"
        self.config_path = work_dir / "collector.yaml"
        work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        pythonpath = os.pathsep.join(
            p for p in (str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p
        )
        super().__init__(
            [*command, "--config", str(self.config_path)],
            work_dir,
            "daemon",
            # PYTHONFAULTHANDLER: a crash, or the SIGABRT of `stop()` after a hang, leaves every
            # thread's stack in the daemon's log.
            env={"PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1",
                 **(env or {})},
            ready_url=f"{self.url}/healthz",
            ready_timeout=ready_timeout,
        )

    def restart(self) -> Self:
        """Stop (if still running) and start again on the same config and data dir."""
        self.stop()
        return self.start()
