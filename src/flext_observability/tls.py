"""TLS from the config's `tls` blocks: the receivers' server side, the exporters' client side.

The server side serves HTTP (uvicorn's ssl options) and OTLP/gRPC (server credentials that
a reload gives new files) from the same certificate; with `client_ca_file`, both require a
client certificate signed by it.
The client side gives an `ssl.SSLContext` for httpx (`verify=context`) and gRPC channel
credentials. Files are read when called: config validation calls the context builders,
so a file that does not load is reported by `check-config`.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, cast

import grpc
from pydantic import model_validator

from flext_observability.settings import ReadableFile, Section


def _cert_and_key(cert_file: Path | None, key_file: Path | None) -> None:
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file must be set together")


class TlsServerConfig(Section):
    """`server.tls`: a certificate turns TLS on for HTTP and gRPC; `client_ca_file` makes
    both require a client certificate signed by that CA."""

    cert_file: ReadableFile | None = None
    key_file: ReadableFile | None = None
    client_ca_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _loads(self) -> Self:
        _cert_and_key(self.cert_file, self.key_file)
        if self.cert_file is None:
            if self.client_ca_file is not None:
                raise ValueError("client_ca_file needs cert_file and key_file")
            return self
        try:
            server_ssl_context(self)
        except (ssl.SSLError, OSError) as exc:
            message = f"cert_file, key_file or client_ca_file does not load: {exc}"
            raise ValueError(message) from None
        return self


class TlsClientConfig(Section):
    """An exporter's `tls`, used for https:// endpoints."""

    ca_file: ReadableFile | None = None
    cert_file: ReadableFile | None = None
    key_file: ReadableFile | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _loads(self) -> Self:
        _cert_and_key(self.cert_file, self.key_file)
        if self.ca_file is None and self.cert_file is None:
            return self
        try:
            client_ssl_context(self)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"ca_file, cert_file or key_file does not load: {exc}") from None
        return self


def server_ssl_context(tls: TlsServerConfig) -> ssl.SSLContext:
    """The server's context; raises ssl.SSLError / OSError when a file does not load."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.client_ca_file is not None:
        context.load_verify_locations(cafile=str(tls.client_ca_file))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def uvicorn_ssl_options(tls: TlsServerConfig) -> dict[str, Any]:
    """Keyword arguments of `uvicorn.Config` for HTTPS; empty when TLS is off."""
    if tls.cert_file is None:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": str(tls.cert_file),
        "ssl_keyfile": str(tls.key_file),
    }
    if tls.client_ca_file is not None:
        options["ssl_ca_certs"] = str(tls.client_ca_file)
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options


class GrpcServerCertificates:
    """Server credentials for `add_secure_port` whose files `load()` reads again (a reload):
    gRPC asks for the certificate at every new connection's handshake, so new connections
    get the new one; connections already open keep theirs. Whether a client certificate is
    required is fixed at start (`client_ca_file` set or not)."""

    def __init__(self, tls: TlsServerConfig) -> None:
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        # (gRPC's stubs leave out the None its documentation allows: "no change")
        fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], self._fetch)
        self.credentials = grpc.dynamic_ssl_server_credentials(
            self._configuration(tls), fetch,
            require_client_authentication=tls.client_ca_file is not None,
        )

    @staticmethod
    def _configuration(tls: TlsServerConfig) -> grpc.ServerCertificateConfiguration:
        if tls.cert_file is None or tls.key_file is None:
            raise ValueError("cert_file and key_file must be set")
        return grpc.ssl_server_certificate_configuration(
            [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
            root_certificates=_read(tls.client_ca_file),
        )

    def load(self, tls: TlsServerConfig) -> None:
        """Read the files again; the next handshake uses them."""
        configuration = self._configuration(tls)
        with self._lock:
            self._pending = configuration

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's fetcher (called before each handshake): the new files once, else None."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending


def grpc_server_certificates(tls: TlsServerConfig) -> GrpcServerCertificates | None:
    """The gRPC listener's certificates; None when TLS is off (an insecure port)."""
    if tls.cert_file is None or tls.key_file is None:
        return None
    return GrpcServerCertificates(tls)


def client_ssl_context(tls: TlsClientConfig) -> ssl.SSLContext:
    """For httpx (`verify=context`): trusts `ca_file` (else the system's CAs), presents the
    client certificate when set, and verifies nothing with `insecure_skip_verify`."""
    context = ssl.create_default_context(
        cafile=str(tls.ca_file) if tls.ca_file is not None else None
    )
    if tls.cert_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def grpc_channel_credentials(tls: TlsClientConfig) -> grpc.ChannelCredentials:
    """For `grpc.secure_channel`: `ca_file` (else gRPC's own roots) and the client
    certificate. gRPC in Python always verifies the server; the config refuses
    `insecure_skip_verify` with the gRPC protocol."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca_file),
        private_key=_read(tls.key_file),
        certificate_chain=_read(tls.cert_file),
    )


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()
