"""What a user of Alertmanager sees: a real Alertmanager that notifies a webhook receiver
(one notification per group and change, grouped by alertname), and that receiver."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from .procs import Alertmanager, free_port


class WebhookReceiver:
    """An HTTP server keeping every notification Alertmanager posts to it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._lock = threading.Lock()
        self._notifications: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver._notifications.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def notifications(self, alertname: str) -> list[tuple[str, list[str]]]:
        """The notifications of alertname's group, in order: (status, [each alert's
        status]) per notification."""
        with self._lock:
            return [
                (n["status"], [a["status"] for a in n["alerts"]])
                for n in self._notifications
                if n.get("groupLabels", {}).get("alertname") == alertname
            ]


def notifying_alertmanager(work_dir: Path, webhook: WebhookReceiver) -> Alertmanager:
    """A real Alertmanager grouping by alertname, notifying `webhook` of every firing and
    resolved group at once (group_wait and group_interval 1 s, no repeat within the test)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    manager = Alertmanager(work_dir)
    manager.config_path.write_text(yaml.safe_dump({
        "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "hook", "webhook_configs": [
            {"url": webhook.url, "send_resolved": True}]}],
    }, sort_keys=False))
    return manager.start()
