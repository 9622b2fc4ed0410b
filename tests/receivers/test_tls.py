"""TLS against the real daemon: HTTPS and OTLP/gRPC over TLS, mutual TLS, and the exporters
over TLS: Alertmanager's API on an HTTPS server, Jaeger's OTLP/gRPC receiver (a stand-in
built from the opentelemetry-proto definitions, as no Jaeger runs here) with mutual TLS.
Certificates come from the openssl command."""

import shutil
import sqlite3
import ssl
import subprocess
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from flext_observability.config import ConfigError, load_config
from flext_observability.tls import TlsClientConfig, client_ssl_context
from helpers.procs import Daemon, poll

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
NOW = 1_700_000_000_000_000_000


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def issue(directory: Path, name: str, subject: str, extensions: str) -> None:
    """A P-256 key and a certificate for it signed by the test CA."""
    (directory / f"{name}.ext").write_text(extensions)
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
            cwd=directory)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
            cwd=directory)


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip(reason="the openssl command is not installed (Debian package openssl)")
    directory = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=flext test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    issue(directory, "server", "/CN=localhost",
          "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    issue(directory, "client", "/CN=flext test client", "extendedKeyUsage=clientAuth\n")
    return Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                 directory / "client.pem", directory / "client.key")


def client_context(certs: Certs, with_client_cert: bool = False) -> ssl.SSLContext:
    cert, key = (certs.client_cert, certs.client_key) if with_client_cert else (None, None)
    return client_ssl_context(TlsClientConfig(ca_file=certs.ca, cert_file=cert, key_file=key))


def grpc_credentials(certs: Certs, with_client_cert: bool = False) -> grpc.ChannelCredentials:
    if not with_client_cert:
        return grpc.ssl_channel_credentials(certs.ca.read_bytes())
    return grpc.ssl_channel_credentials(certs.ca.read_bytes(), certs.client_key.read_bytes(),
                                        certs.client_cert.read_bytes())


class TlsDaemon(Daemon):
    """The daemon with `server.tls`: `url` is https://, ready once /healthz answers over TLS."""

    def __init__(self, work_dir: Path, config: dict, context: ssl.SSLContext) -> None:
        super().__init__(work_dir, config_overrides=config)
        self.ready_url = None
        self.url = self.url.replace("http://", "https://", 1)
        self.plain_url = self.url.replace("https://", "http://", 1)
        self.context = context

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", verify=self.context, timeout=10, trust_env=False)

    def start(self) -> "TlsDaemon":
        super().start()

        def healthz() -> int | None:
            if self.returncode is not None:
                raise RuntimeError(f"daemon exited with {self.returncode}:\n{self.log_tail()}")
            try:
                return self.get("/healthz").status_code
            except httpx.TransportError:
                return None

        try:
            poll(healthz, lambda status: status == 200, 20, 0.05, "daemon over https")
        except BaseException:
            self.stop()
            raise
        return self


class AlertsHandler(BaseHTTPRequestHandler):
    """Alertmanager's `POST /api/v2/alerts`: keeps every posted alert list."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/api/v2/alerts":
            self.server.bodies.append(orjson.loads(body))
        self.send_response(200 if self.path == "/api/v2/alerts" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet: the test reads what arrived instead."""


@pytest.fixture(scope="module")
def https_alertmanager(certs) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), AlertsHandler)
    server.bodies = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@dataclass
class TraceSink:
    """Jaeger's OTLP/gRPC trace receiver over mutual TLS: keeps every request it gets."""

    port: int
    requests: list[ExportTraceServiceRequest]


@pytest.fixture(scope="module")
def mtls_trace_sink(certs) -> Iterator[TraceSink]:
    requests: list[ExportTraceServiceRequest] = []

    def export(request: bytes, context: grpc.ServicerContext) -> bytes:
        requests.append(ExportTraceServiceRequest.FromString(request))
        return ExportTraceServiceResponse().SerializeToString()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)},
    )])
    credentials = grpc.ssl_server_credentials(
        [(certs.server_key.read_bytes(), certs.server_cert.read_bytes())],
        root_certificates=certs.ca.read_bytes(), require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield TraceSink(port, requests)
    server.stop(None)


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory, certs, https_alertmanager, mtls_trace_sink) -> Iterator[TlsDaemon]:
    port = https_alertmanager.server_address[1]
    client_tls = {"ca_file": str(certs.ca), "cert_file": str(certs.client_cert),
                  "key_file": str(certs.client_key)}
    daemon = TlsDaemon(tmp_path_factory.mktemp("tls"), {
        "server": {"tls": {"cert_file": str(certs.server_cert),
                           "key_file": str(certs.server_key)}},
        "exporters": {
            "alertmanager": {"urls": [f"https://127.0.0.1:{port}"],
                             "tls": {"ca_file": str(certs.ca)}},
            "jaeger": {"endpoint": f"https://127.0.0.1:{mtls_trace_sink.port}",
                       "protocol": "grpc", "batch_timeout": "10ms", "tls": client_tls},
        },
    }, client_context(certs))
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module", params=[0, 1], ids=["one-process", "1-worker"])
def mtls_daemon(tmp_path_factory, certs, request) -> Iterator[TlsDaemon]:
    """HTTPS served by the collector process, or by an ingest worker (server.workers)."""
    daemon = TlsDaemon(tmp_path_factory.mktemp("mtls"), {
        "server": {"workers": request.param,
                   "tls": {"cert_file": str(certs.server_cert), "key_file": str(certs.server_key),
                           "client_ca_file": str(certs.ca)}},
        "queue": {"hold_unexported": True},
    }, client_context(certs, with_client_cert=True))
    daemon.start()
    yield daemon
    daemon.stop()


def post_metric(url: str, context: ssl.SSLContext, name: str) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/metrics", verify=context, timeout=10, trust_env=False,
                      json={"name": name, "type": "gauge", "value": 7, "service": "tls"})


def trace_request(name: str) -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = b"\x01" * 16
    span.span_id = b"\x02" * 8
    span.name = name
    span.start_time_unix_nano = NOW
    span.end_time_unix_nano = NOW + 1
    return request.SerializeToString()


def queued_span_names(daemon: Daemon) -> set[str]:
    with sqlite3.connect(f"file:{daemon.data_dir / 'queue.sqlite3'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT payload FROM records WHERE signal = 'spans'").fetchall()
    return {span.name
            for (payload,) in rows
            for rs in ExportTraceServiceRequest.FromString(payload).resource_spans
            for ss in rs.scope_spans
            for span in ss.spans}


@pytest.mark.integration
def test_https_receiver_takes_data_and_plain_http_fails(tls_daemon, certs):
    answer = post_metric(tls_daemon.url, tls_daemon.context, "tls_temperature")
    assert answer.status_code == 202, answer.text
    text = poll(lambda: tls_daemon.get("/metrics").text, lambda t: "tls_temperature{" in t, 10,
                0.05, "metric over https")
    assert 'tls_temperature{job="tls"} 7.0' in text
    with pytest.raises(httpx.TransportError):
        post_metric(tls_daemon.plain_url, tls_daemon.context, "tls_plain")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        post_metric(tls_daemon.url, ssl.create_default_context(), "tls_untrusted")


@pytest.mark.integration
def test_grpc_over_tls_in_and_out_and_not_in_plaintext(tls_daemon, certs, mtls_trace_sink):
    """A span in over OTLP/gRPC with TLS reaches Jaeger over OTLP/gRPC with mutual TLS."""
    with grpc.secure_channel(tls_daemon.grpc_target, grpc_credentials(certs)) as channel:
        channel.unary_unary(TRACE_EXPORT)(trace_request("grpc-tls"), timeout=10)

    def exported() -> set[str]:
        return {span.name for request in list(mtls_trace_sink.requests)
                for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans}

    poll(exported, lambda names: "grpc-tls" in names, 15, 0.05, "span exported over mTLS")
    with grpc.insecure_channel(tls_daemon.grpc_target) as channel, pytest.raises(
        grpc.RpcError
    ) as failed:
        channel.unary_unary(TRACE_EXPORT)(trace_request("grpc-plain"), timeout=5)
    assert failed.value.code() is grpc.StatusCode.UNAVAILABLE


@pytest.mark.integration
def test_client_ca_requires_a_client_certificate(mtls_daemon, certs):
    with pytest.raises(httpx.TransportError):
        post_metric(mtls_daemon.url, client_context(certs), "mtls_anonymous")
    answer = post_metric(mtls_daemon.url, mtls_daemon.context, "mtls_client")
    assert answer.status_code == 202, answer.text
    poll(lambda: mtls_daemon.get("/metrics").text, lambda t: 'mtls_client{job="tls"} 7.0' in t,
         10, 0.05, "the metric on /metrics over https")

    with grpc.secure_channel(mtls_daemon.grpc_target, grpc_credentials(certs)) as channel, \
            pytest.raises(grpc.RpcError) as failed:
        channel.unary_unary(TRACE_EXPORT)(trace_request("mtls-anonymous"), timeout=5)
    assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
    credentials = grpc_credentials(certs, with_client_cert=True)
    with grpc.secure_channel(mtls_daemon.grpc_target, credentials) as channel:
        channel.unary_unary(TRACE_EXPORT)(trace_request("mtls-client"), timeout=10)
    assert queued_span_names(mtls_daemon) == {"mtls-client"}


@pytest.mark.integration
def test_alertmanager_exporter_posts_over_https(tls_daemon, https_alertmanager):
    answer = httpx.post(f"{tls_daemon.url}/api/v1/alerts", verify=tls_daemon.context,
                        timeout=10, trust_env=False,
                        json={"name": "CertExpiring", "service": "edge", "severity": "warning"})
    assert answer.status_code == 202, answer.text
    bodies = poll(lambda: list(https_alertmanager.bodies),
                  lambda b: any(a["labels"]["alertname"] == "CertExpiring" for x in b for a in x),
                  15, 0.05, "alert posted to the https Alertmanager")
    alert = next(a for x in bodies for a in x if a["labels"]["alertname"] == "CertExpiring")
    assert alert["labels"]["service"] == "edge"


def test_client_context_trusts_the_configured_ca_only(https_alertmanager, certs):
    url = f"https://127.0.0.1:{https_alertmanager.server_address[1]}/api/v2/alerts"

    def post(tls: TlsClientConfig) -> int:
        return httpx.post(url, json=[], verify=client_ssl_context(tls), timeout=10,
                          trust_env=False).status_code

    assert post(TlsClientConfig(ca_file=certs.ca)) == 200
    assert post(TlsClientConfig(insecure_skip_verify=True)) == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        post(TlsClientConfig())


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("tls", "expected"), [
    ("{cert_file: CERT}", "server.tls: cert_file and key_file must be set together"),
    ("{key_file: KEY}", "server.tls: cert_file and key_file must be set together"),
    ("{client_ca_file: CA}", "server.tls: client_ca_file needs cert_file"),
    ("{cert_file: /nonexistent.pem, key_file: KEY}",
     "server.tls.cert_file: cannot read /nonexistent.pem: No such file"),
    ("{cert_file: CERT, key_file: CLIENT_KEY}", "server.tls: cert_file, key_file"),
])
def test_server_tls_config_errors(tmp_path, certs, tls, expected):
    for name, path in (("CLIENT_KEY", certs.client_key), ("CERT", certs.server_cert),
                       ("KEY", certs.server_key), ("CA", certs.ca)):
        tls = tls.replace(name, str(path))
    path = write_config(tmp_path, f"server: {{tls: {tls}}}\n")
    with pytest.raises(ConfigError) as failed:
        load_config(path)
    # Each error names the file it is in, then the YAML path.
    assert any(line.startswith(f"{path}: {expected}") for line in failed.value.errors), (
        failed.value.errors)


def test_exporter_tls_config_errors(tmp_path, certs):
    path = write_config(tmp_path, f"""
exporters:
  jaeger: {{tls: {{ca_file: {certs.server_key}}}}}
  alertmanager: {{tls: {{cert_file: {certs.client_cert}}}}}
""")
    with pytest.raises(ConfigError) as failed:
        load_config(path)
    jaeger, alertmanager = failed.value.errors
    assert jaeger.startswith(
        f"{path}: exporters.jaeger.tls: ca_file, cert_file or key_file does not load:")
    assert alertmanager == (
        f"{path}: exporters.alertmanager.tls: cert_file and key_file must be set together")
