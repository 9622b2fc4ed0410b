"""Exporters changed by a hot reload against the real daemon, while a client posts spans
continuously over one keep-alive connection: an OTLP entry added (every span answered 2xx
after the reload reaches its sink), removed (gone from /readyz), then the Jaeger endpoint
moved to another sink while the first one fails (the backlog goes on from the exporter's
queue cursor to the new endpoint). No connection error, no 5xx, and every span answered
2xx reaches one of the sinks."""

import threading
import time

import httpx
import pytest
import yaml

from helpers.otlp_sink import OtlpSink
from helpers.procs import Daemon, poll

integration = pytest.mark.integration

NOW = 1_795_773_000 * 10**9
EXTRA = {"name": "extra", "protocol": "http/protobuf", "signals": ["traces"],
         "batch_timeout": 0.1}


class SpanPoster(threading.Thread):
    """Posts one native span per request until stopped; keeps each span id's answer and
    when its request was sent (monotonic)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.client = httpx.Client(timeout=60, trust_env=False,
                                   limits=httpx.Limits(max_connections=1))
        self.stop = threading.Event()
        self.answers: dict[str, tuple[float, int]] = {}
        self.failures: list[str] = []

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            seq += 1
            span_id = f"{seq:016x}"
            span = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": span_id,
                    "name": "reload-op", "service": "probe", "start_time": NOW,
                    "end_time": NOW + 1000}
            sent = time.monotonic()
            try:
                answer = self.client.post(f"{self.url}/api/v1/spans", json=span)
            except httpx.TransportError as exc:
                self.failures.append(f"{span_id}: {exc!r}")
            else:
                self.answers[span_id] = (sent, answer.status_code)
            time.sleep(0.005)
        self.client.close()

    def accepted(self, since: float = 0.0) -> set[str]:
        return {span_id for span_id, (sent, status) in list(self.answers.items())
                if 200 <= status < 300 and sent >= since}


@pytest.fixture
def sinks():
    first, second = OtlpSink().start(), OtlpSink().start()
    yield first, second
    first.stop()
    second.stop()


@integration
def test_reload_adds_removes_and_moves_exporters_without_loss(tmp_path, sinks):
    first, second = sinks
    jaeger = {"endpoint": first.grpc_endpoint, "batch_timeout": 0.1,
              "retry": {"initial_interval": 0.2, "max_interval": 0.5}}
    daemon = Daemon(tmp_path, config_overrides={"exporters": {"jaeger": jaeger}}).start()
    poster = SpanPoster(daemon.url)

    def reload_with(**exporters):
        config = yaml.safe_load(daemon.config_path.read_text())
        config["exporters"].update(exporters)
        daemon.config_path.write_text(yaml.safe_dump(config))
        answer = httpx.post(f"{daemon.url}/-/reload", timeout=30, trust_env=False)
        assert answer.status_code == 200, answer.text
        assert answer.json()["restart_needed"] == []
        return answer.json()["applied"], time.monotonic()

    def exporters_ready():
        return httpx.get(f"{daemon.url}/readyz", timeout=10, trust_env=False).json()["exporters"]

    def more_posts(count=30):
        seen = len(poster.answers)
        poll(lambda: len(poster.answers), lambda n: n >= seen + count, 30, 0.05, "posting")

    try:
        poster.start()
        more_posts()

        # An OTLP entry added: every span answered 2xx after the reload reaches its sink.
        applied, added_at = reload_with(otlp=[{**EXTRA, "endpoint": second.http_endpoint}])
        assert applied == ["exporters.otlp"]
        assert exporters_ready()["extra"]["state"] == "up"
        more_posts()
        second.wait_for_span_ids(poster.accepted(added_at), timeout=20)

        # Removed: gone from /readyz; the Jaeger exporter keeps running.
        applied, _ = reload_with(otlp=[])
        assert applied == ["exporters.otlp"]
        assert "extra" not in exporters_ready()
        assert exporters_ready()["jaeger"]["state"] == "up"
        more_posts()

        # The first sink fails (a backlog builds up), then the Jaeger endpoint moves to the
        # second sink: the new exporter goes on from the old one's cursor.
        first.fail()
        failing_from = time.monotonic()
        more_posts()
        poll(lambda: first.refused_calls, bool, 20, 0.05, "the first sink refusing")
        applied, moved_at = reload_with(jaeger={**jaeger, "endpoint": second.grpc_endpoint})
        assert applied == ["exporters.jaeger.endpoint"]
        more_posts()
        backlog = poster.accepted(failing_from) - first.span_ids()
        assert backlog
        second.wait_for_span_ids(backlog | poster.accepted(moved_at), timeout=20)
    finally:
        poster.stop.set()
        if poster.is_alive():
            poster.join(30)

    try:
        assert poster.failures == []
        statuses = {status for _, status in poster.answers.values()}
        assert statuses == {202}, statuses
        accepted = poster.accepted()
        assert len(accepted) > 100
        poll(lambda: first.span_ids() | second.span_ids(), lambda got: accepted <= got, 20, 0.2,
             "every span answered 2xx at a sink")
        assert "exporters replaced: extra" in daemon.log_tail(400)
    finally:
        daemon.stop()


@integration
def test_reload_turns_span_acceptance_on_and_off(tmp_path, sinks):
    """No span exporter: spans refused (422, naming the key); an exporter added by a reload:
    taken and delivered; removed again: refused again."""
    sink, _ = sinks
    daemon = Daemon(tmp_path).start()
    span = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
            "name": "op", "service": "probe", "start_time": NOW, "end_time": NOW + 1000}

    def post():
        return httpx.post(f"{daemon.url}/api/v1/spans", json=span, timeout=10, trust_env=False)

    def reload_with(otlp):
        config = yaml.safe_load(daemon.config_path.read_text())
        config.setdefault("exporters", {})["otlp"] = otlp
        daemon.config_path.write_text(yaml.safe_dump(config))
        answer = httpx.post(f"{daemon.url}/-/reload", timeout=30, trust_env=False)
        assert answer.status_code == 200, answer.text

    try:
        refused = post()
        assert refused.status_code == 422
        assert "exporters.jaeger" in refused.text
        reload_with([{**EXTRA, "endpoint": sink.http_endpoint}])
        assert post().status_code == 202
        sink.wait_for_span_ids({span["span_id"]}, timeout=20)
        reload_with([])
        assert post().status_code == 422
    finally:
        daemon.stop()
