"""Hot reload against the real daemon under load: a client posts continuously over one
TLS keep-alive connection while the config changes (a limit lowered, the token rotated,
the certificate replaced, then an invalid file). No connection error, no 5xx, every item
answered 2xx reaches the exposition, and the old token is refused right after the
reload that rotated it. A gRPC client's connection stays up across the certificate change
while new gRPC connections get the new certificate; the memory limiter's keys apply too."""

import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from helpers.procs import Daemon, poll, start_alertmanager

integration = pytest.mark.integration

TLS_REREAD = "server.tls (certificate files re-read, for HTTP and gRPC)"
OLD = f"tok-old-{secrets.token_hex(8)}"
NEW = f"tok-new-{secrets.token_hex(8)}"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def issue_server_cert(directory: Path, common_name: str) -> None:
    """server.pem/server.key for 127.0.0.1 (and `<common_name>.reload.test`), signed by
    ca.pem, written in place."""
    (directory / "server.ext").write_text(
        f"subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:{common_name}.reload.test\n"
        "extendedKeyUsage=serverAuth\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "next.key", "-out", "server.csr", "-subj", f"/CN={common_name}",
            cwd=directory)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", "next.pem", "-extfile", "server.ext",
            cwd=directory)
    (directory / "next.key").replace(directory / "server.key")
    (directory / "next.pem").replace(directory / "server.pem")


@pytest.fixture
def certs(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip(reason="the openssl command is not installed (Debian package openssl)")
    directory = tmp_path / "certs"
    directory.mkdir()
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=flext reload CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    issue_server_cert(directory, "first")
    return directory


def peer_common_name(port: int, ca: Path) -> str | None:
    """The CN of the certificate a new TLS connection gets; None while nothing listens."""
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port), 10),
                                 server_hostname="127.0.0.1") as sock:
            subject = dict(pair[0] for pair in sock.getpeercert()["subject"])
    except ConnectionRefusedError:
        return None
    return subject["commonName"]


METRICS_EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


def grpc_export(channel: grpc.Channel, token: str) -> None:
    """One OTLP/gRPC metrics export (a gauge point); raises grpc.RpcError when refused."""
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="reload_grpc")
    metric.gauge.data_points.add(as_double=1.0, time_unix_nano=1)
    channel.unary_unary(METRICS_EXPORT)(request.SerializeToString(), timeout=10,
                                        metadata=(("authorization", f"Bearer {token}"),))


def grpc_channel(target: str, ca: Path, name: str | None = None) -> grpc.Channel:
    """A TLS channel trusting `ca`, checking the server's certificate holds `name`."""
    options = [] if name is None else [("grpc.ssl_target_name_override", name)]
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(ca.read_bytes()), options)


def verifying(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


class Poster(threading.Thread):
    """Posts one metric (2 labels) per request on one keep-alive connection until stopped;
    keeps the answers by sequence number."""

    def __init__(self, url: str, ca: Path | None = None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.client = httpx.Client(verify=verifying(ca) if ca else True, timeout=60,
                                   trust_env=False, limits=httpx.Limits(max_connections=1))
        self.token = OLD
        self.stop = threading.Event()
        self.answers: dict[int, int] = {}
        self.failures: list[str] = []

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            item = {"name": "reload_probe", "type": "gauge", "value": seq, "service": "probe",
                    "labels": {"seq": str(seq), "kind": "load"}}
            try:
                answer = self.client.post(f"{self.url}/api/v1/metrics", json=item,
                                          headers={"Authorization": f"Bearer {self.token}"})
            except httpx.TransportError as exc:
                self.failures.append(f"{seq}: {exc!r}")
            else:
                self.answers[seq] = answer.status_code
            seq += 1
        self.client.close()


@pytest.fixture
def alertmanager(tmp_path):
    alertmanager = start_alertmanager(tmp_path)
    yield alertmanager
    alertmanager.stop()


@integration
def test_reload_under_load_loses_nothing(tmp_path, certs, alertmanager, process_reaper):
    config = {
        "server": {"auth": {"tokens": [{"token": OLD, "tenant": "probe"}]},
                   "tls": {"cert_file": str(certs / "server.pem"),
                           "key_file": str(certs / "server.key")}},
        "limits": {"max_labels_per_metric": 8},
    }
    daemon = Daemon(tmp_path / "daemon", config_overrides=config)
    process_reaper.append(daemon)  # stopped even when the first phase fails
    daemon.ready_url = None
    url = daemon.url.replace("http://", "https://")
    port = int(url.rsplit(":", 1)[1])
    ca = certs / "ca.pem"
    daemon.start()
    poster = Poster(url, ca)

    def post(item, token):
        return httpx.post(f"{url}/api/v1/metrics", json=item, verify=verifying(ca), timeout=10,
                          headers={"Authorization": f"Bearer {token}"}, trust_env=False)

    def rewrite(**changes):
        current = yaml.safe_load(daemon.config_path.read_text())
        for path, value in changes.items():
            section = current
            *parents, leaf = path.split(".")
            for key in parents:
                section = section.setdefault(key, {})
            section[leaf] = value
        daemon.config_path.write_text(yaml.safe_dump(current))

    def reload(token):
        return httpx.post(f"{url}/-/reload", verify=verifying(ca), timeout=30, trust_env=False,
                          headers={"Authorization": f"Bearer {token}"})

    three_labels = {"name": "reload_wide", "type": "gauge", "value": 1, "service": "probe",
                    "labels": {"a": "1", "b": "2", "c": "3"}}
    try:
        poll(lambda: peer_common_name(port, ca), lambda cn: cn == "first", 20, 0.1, "TLS up")
        poster.start()
        poll(lambda: len(poster.answers), lambda n: n >= 20, 30, 0.05, "posting")
        assert post(three_labels, OLD).status_code == 202

        # An exporter added, a limit lowered (and a key that needs a restart, reported and
        # left as it was).
        alert = {"name": "ReloadedExporter", "service": "probe", "summary": "sent after reload"}
        alert_answer = httpx.post(f"{url}/api/v1/alerts", json=alert, verify=verifying(ca),
                                  headers={"Authorization": f"Bearer {OLD}"}, trust_env=False)
        assert alert_answer.status_code == 202
        rewrite(**{"limits.max_labels_per_metric": 2, "queue.max_items": 123_456,
                   "exporters.alertmanager.urls": [alertmanager.url]})
        answer = reload(OLD)
        assert answer.status_code == 200, answer.text
        # With TLS on, every reload re-reads the certificate files (and says so).
        assert answer.json()["applied"] == [
            "exporters.alertmanager.urls", "limits.max_labels_per_metric", TLS_REREAD]
        assert answer.json()["restart_needed"] == ["queue.max_items"]
        alertmanager.wait_for(filter=['alertname="ReloadedExporter"'])
        refused = post(three_labels, OLD)
        assert refused.status_code == 422
        assert "limits.max_labels_per_metric=2" in refused.text

        # The token rotated: the new one works and the old one is refused at once.
        rewrite(**{"server.auth.tokens": [{"token": NEW, "tenant": "probe"}]})
        answer = reload(OLD)
        assert answer.status_code == 200, answer.text
        assert answer.json()["applied"] == ["server.auth", TLS_REREAD]
        assert OLD not in answer.text
        assert NEW not in answer.text
        assert post({**three_labels, "labels": {"a": "1"}}, OLD).status_code == 401
        poster.token = NEW
        assert post({**three_labels, "labels": {"a": "1"}}, NEW).status_code == 202

        # A gRPC client with its connection open (its states recorded).
        grpc_target = daemon.grpc_target
        channel = grpc_channel(grpc_target, ca)
        states: list[grpc.ChannelConnectivity] = []
        channel.subscribe(states.append, try_to_connect=True)
        grpc_export(channel, NEW)
        # The states are told on gRPC's own thread, maybe after the call returned.
        poll(lambda: list(states), lambda seen: grpc.ChannelConnectivity.READY in seen, 10,
             0.05, "the channel READY")

        # The certificate replaced in place, then SIGHUP: new handshakes get the new one.
        issue_server_cert(certs, "second")
        os.kill(daemon.pid, signal.SIGHUP)
        poll(lambda: peer_common_name(port, ca), lambda cn: cn == "second", 20, 0.1,
             "the new certificate served")
        # gRPC too, on a new connection (only the new certificate names second.reload.test),
        # while the open connection goes on: the channel never left READY.
        with grpc_channel(grpc_target, ca, "second.reload.test") as fresh:
            grpc_export(fresh, NEW)
        with grpc_channel(grpc_target, ca, "first.reload.test") as stale, \
                pytest.raises(grpc.RpcError) as refused:
            grpc_export(stale, NEW)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        grpc_export(channel, NEW)
        assert states[states.index(grpc.ChannelConnectivity.READY):] == [
            grpc.ChannelConnectivity.READY]
        channel.close()

        # An invalid file: 400 with every error and its YAML path; nothing changes.
        rewrite(**{"limits.max_labels_per_metric": 0, "health.no_such_key": 1})
        answer = reload(NEW)
        assert answer.status_code == 400
        fields = {e["field"] for e in answer.json()["errors"]}
        assert fields == {"limits.max_labels_per_metric", "health.no_such_key"}
        assert post({**three_labels, "labels": {"a": "1", "b": "2"}}, NEW).status_code == 202
        assert peer_common_name(port, ca) == "second"
        scrape = httpx.get(f"{url}/metrics", verify=verifying(ca), trust_env=False).text
        assert "flext_collector_config_last_reload_successful 0.0" in scrape

        count = len(poster.answers)
        poll(lambda: len(poster.answers), lambda n: n >= count + 20, 30, 0.05, "more posts")
    finally:
        poster.stop.set()
        if poster.is_alive():
            poster.join(30)

    try:
        assert poster.failures == []
        statuses = set(poster.answers.values())
        assert statuses <= {202, 401}, statuses
        accepted = {seq for seq, status in poster.answers.items() if status == 202}
        assert len(accepted) > 40

        def delivered():
            text = httpx.get(f"{url}/metrics", verify=verifying(ca), trust_env=False).text
            return {int(line.split('seq="')[1].split('"')[0])
                    for line in text.splitlines() if line.startswith("reload_probe{")}

        poll(delivered, lambda found: accepted <= found, 20, 0.2, "every 2xx'd item exported")
        assert "config reloaded: applied=server.auth" in daemon.log_tail(400)
        assert "config reload failed, nothing changed" in daemon.log_tail(400)

        # The memory limiter's keys: a limit below what the process holds refuses data
        # at once; turned off, data comes in again.
        current = yaml.safe_load(daemon.config_path.read_text())
        current["health"].pop("no_such_key")
        current["limits"].update(max_labels_per_metric=2, memory_limit_mib=16,
                                 memory_spike_limit_mib=8)
        daemon.config_path.write_text(yaml.safe_dump(current))
        answer = reload(NEW)
        assert answer.status_code == 200, answer.text
        assert answer.json()["applied"] == [
            "limits.memory_limit_mib", "limits.memory_spike_limit_mib", TLS_REREAD]
        limited = post({**three_labels, "labels": {"a": "1"}}, NEW)
        assert limited.status_code == 503, limited.text
        assert "limits.memory_limit_mib (16)" in limited.text
        rewrite(**{"limits.memory_limit_mib": 0})
        assert reload(NEW).status_code == 200
        assert post({**three_labels, "labels": {"a": "1"}}, NEW).status_code == 202
    finally:
        daemon.stop()


@integration
def test_reload_with_ingest_workers_replaces_them_without_loss(tmp_path):
    """server.workers: 1; SIGHUP rotates the token: a new worker starts with it, then the
    old one drains and stops, while a client keeps posting."""
    daemon = Daemon(tmp_path, config_overrides={"server": {
        "workers": 1, "auth": {"tokens": [{"token": OLD, "tenant": "probe"}]}}},
        ready_timeout=60).start()
    poster = Poster(daemon.url)
    try:
        poster.start()
        poll(lambda: len(poster.answers), lambda n: n >= 20, 60, 0.05, "posting")
        config = yaml.safe_load(daemon.config_path.read_text())
        config["server"]["auth"]["tokens"] = [{"token": NEW, "tenant": "probe"}]
        daemon.config_path.write_text(yaml.safe_dump(config))
        os.kill(daemon.pid, signal.SIGHUP)

        def status(token):
            return httpx.post(f"{daemon.url}/api/v1/health", timeout=30,
                              json={"service": "probe", "status": "healthy"},
                              headers={"Authorization": f"Bearer {token}"}).status_code

        poll(lambda: status(NEW), lambda code: code == 202, 90, 0.2, "the new token works")
        assert status(OLD) == 401
        poster.token = NEW
        poll(lambda: "ingest workers replaced" in daemon.log_tail(200), bool, 60, 0.2,
             "the old worker stopped")
        count = len(poster.answers)
        poll(lambda: len(poster.answers), lambda n: n >= count + 20, 30, 0.05, "more posts")
    finally:
        poster.stop.set()
        if poster.is_alive():
            poster.join(60)
    try:
        assert poster.failures == []
        assert set(poster.answers.values()) <= {202, 401}
        accepted = {seq for seq, code in poster.answers.items() if code == 202}

        def delivered():
            text = httpx.get(f"{daemon.url}/metrics", timeout=30).text
            return {int(line.split('seq="')[1].split('"')[0])
                    for line in text.splitlines() if line.startswith("reload_probe{")}

        poll(delivered, lambda found: accepted <= found, 30, 0.2, "every 2xx'd item exported")
    finally:
        daemon.stop()
