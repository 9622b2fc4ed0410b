"""Shared bench plumbing: start real processes on free ports, drive them with wrk."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]

WRK_POST = """
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CTYPE")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout}s")


@contextlib.contextmanager
def process(args: Sequence[str], ready_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(ready_url, proc)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def collector(config: dict | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The daemon with a disk queue in a temp dir; yields (base url, process)."""
    with tempfile.TemporaryDirectory(prefix="flext-bench-") as tmp:
        port, grpc_port = free_port(), free_port()
        while grpc_port == port:
            grpc_port = free_port()
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
    `script_text`, a wrk script reading the same variables, sends)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian package wrk; make system-deps)")
    with tempfile.TemporaryDirectory(prefix="flext-bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(script_text)
        body_file = Path(tmp) / "body"
        body_file.write_bytes(body)
        env = {**os.environ, "BENCH_BODY": str(body_file), "BENCH_CTYPE": content_type}
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
            capture_output=True, text=True, env=env, check=True,
        ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    socket_errors = re.search(r"Socket errors: .*timeout (\d+)", out)
    if socket_errors:
        errors += int(socket_errors.group(1))
    return WrkResult(rate * (total - errors) / total if total else 0.0, errors, total)
