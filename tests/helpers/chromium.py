"""Debian's headless Chromium driven over the DevTools protocol (a websocket): load a
page, and get its DOM, its console errors and a screenshot."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

CHROMIUM = shutil.which("chromium")
# The flags that work on a closed network (no background connections, no first run).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*")
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


@dataclass
class Loaded:
    dom: str
    errors: list[str] = field(default_factory=list)


class Browser:
    """One Chromium process with an empty profile under `work_dir`."""

    def __init__(self, work_dir: Path, width: int = 1280, height: int = 1400) -> None:
        assert CHROMIUM is not None, "chromium is not installed"
        self._log = (work_dir / "chromium.log").open("w+")
        self._proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={work_dir / 'profile'}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self._log, text=True,
        )
        self._ids = itertools.count(1)
        self._stack = contextlib.ExitStack()
        deadline = time.monotonic() + 60
        while True:
            self._log.seek(0)
            found = _LISTENING.search(self._log.read())
            if found:
                break
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = found.group(1).split(":")[2].split("/")[0]
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10, trust_env=False)
        page = next(p for p in pages.json() if p["type"] == "page")
        self._ws = self._stack.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024))

    def _call(self, method: str, events: list[dict[str, Any]] | None = None,
              **params: Any) -> dict[str, Any]:
        """Send one command; the events that arrive meanwhile go to `events`."""
        ident = next(self._ids)
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=60))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            if events is not None:
                events.append(message)

    def load(self, url: str) -> Loaded:
        """Navigate to `url`, wait for its load event; the console errors, exceptions and
        failed loads seen meanwhile."""
        events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log"):
            self._call(f"{domain}.enable", events)
        self._call("Page.navigate", events, url=url)
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in events):
            assert time.monotonic() < deadline, "the page did not load"
            events.append(json.loads(self._ws.recv(timeout=60)))
        self._call("Runtime.evaluate", events, expression="1")  # late console messages
        errors = []
        for event in events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description")))
                                       for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(params["entry"]["text"])
        dom = self._call("Runtime.evaluate", expression="document.documentElement.outerHTML")
        return Loaded(dom["result"]["value"], errors)

    def screenshot(self, path: Path) -> None:
        shot = self._call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self._stack.close()
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
