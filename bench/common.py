"""Shared bench plumbing: start real processes on free ports, drive them with wrk."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tests.helpers.procs import ManagedProcess, free_port, free_ports

REPO = Path(__file__).resolve().parents[1]

WRK_POST = """
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CTYPE")
"""
# Appended to every wrk script: each thread counts the answers that are not 2xx (wrk's
# own "Non-2xx or 3xx" passes a 3xx), and the total is printed at the end.
WRK_COUNT_NON_2XX = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non2xx = 0 end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("non2xx") end
  io.write(string.format("NON2XX %d\\n", total))
end
"""
# How many times each figure is taken (`python -m bench --runs`): the median is printed,
# with the spread.
RUNS = 3


@contextlib.contextmanager
def process(args: Sequence[str], ready_url: str, log: Path) -> Iterator[ManagedProcess]:
    """`args` running until the block ends (stopped as the tests stop theirs: SIGTERM, then
    SIGABRT for a stack dump, then SIGKILL), once `ready_url` answers 200; output to `log`."""
    proc = ManagedProcess(args, log.parent, log.stem, env={"PYTHONFAULTHANDLER": "1"},
                          ready_url=ready_url, ready_timeout=30).start()
    try:
        yield proc
    finally:
        proc.stop(30)


@contextlib.contextmanager
def collector(config: dict | None = None) -> Iterator[tuple[str, ManagedProcess]]:
    """The daemon with a disk queue in a temp dir; yields (base url, process)."""
    with tempfile.TemporaryDirectory(prefix="flext-bench-") as tmp:
        port, grpc_port = free_ports(2)
        merged = {
            "server": {"host": "127.0.0.1", "http_port": port, "grpc_port": grpc_port},
            "queue": {"kind": "disk", "path": f"{tmp}/queue"},
        }
        for section, values in (config or {}).items():
            merged.setdefault(section, {}).update(values)
        path = Path(tmp) / "collector.yaml"
        path.write_text(yaml.safe_dump(merged))
        args = [sys.executable, "-m", "flext_observability", "serve", "--config", str(path),
                "--log-level", "warning"]
        url = f"http://127.0.0.1:{port}"
        with process(args, f"{url}/healthz", Path(tmp) / "collector.log") as proc:
            yield url, proc


@contextlib.contextmanager
def pushgateway() -> Iterator[str]:
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        raise RuntimeError("prometheus-pushgateway is not installed (make system-deps)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="flext-bench-pgw-") as tmp, process(
        # Debian's build persists to /var/lib/prometheus by default: memory only here.
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
        f"{url}/-/ready",
        Path(tmp) / "pushgateway.log",
    ):
        yield url


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    errors: int
    requests: int


def wrk_post(url: str, body: bytes, content_type: str, connections: int, seconds: int,
             threads: int = 2, script_text: str = WRK_POST) -> WrkResult:
    """POST the same body over `connections` keep-alive connections for `seconds` (or what
    `script_text`, a wrk script reading the same variables, sends). Only 2xx answers count
    in `requests_per_second`; `errors` are the others and the socket timeouts."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian package wrk; make system-deps)")
    with tempfile.TemporaryDirectory(prefix="flext-bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(script_text + WRK_COUNT_NON_2XX)
        body_file = Path(tmp) / "body"
        body_file.write_bytes(body)
        env = {**os.environ, "BENCH_BODY": str(body_file), "BENCH_CTYPE": content_type}
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
            capture_output=True, text=True, env=env, check=True,
        ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = int(re.search(r"NON2XX (\d+)", out).group(1))
    socket_errors = re.search(r"Socket errors: .*timeout (\d+)", out)
    if socket_errors:
        errors += int(socket_errors.group(1))
    return WrkResult(rate * (total - errors) / total if total else 0.0, errors, total)


def machine() -> str:
    """The header of a run: the cores, the CPU, the load average as it starts."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = " (" + line.split(":", 1)[1].strip() + ")"
                break
    one, five, fifteen = os.getloadavg()
    return (f"machine: {os.cpu_count()} cores{model}; load average at start "
            f"{one:.2f} {five:.2f} {fifteen:.2f}; each figure the median of {RUNS} runs "
            "(min-max)")


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def spread(values: Sequence[float], fmt: str = ",.0f") -> str:
    """`median (min-max)` of the runs' values."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


@dataclass
class Figure:
    """One figure's values, one per repetition."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return median(self.values) if self.values else 0.0

    @property
    def spread(self) -> float:
        """(max - min) / median: how far apart the repetitions are."""
        return (max(self.values) - min(self.values)) / self.median if self.median else 0.0

    def text(self) -> str:
        """`median samples/s (min-max, spread)`."""
        return (f"{self.median:>10,.0f}  ({min(self.values):,.0f}-{max(self.values):,.0f},"
                f" spread {self.spread:.0%})")

    def ratio(self, other: Figure) -> float:
        return self.median / other.median if other.median else 0.0


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} cores"


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 1024**2


def process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds of `pids` so far."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def rss_mib(pids: list[int]) -> float:
    """Resident memory of `pids` together, in MiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return total * PAGE_MIB
