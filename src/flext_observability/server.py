"""Running the daemon: one process, or the collector process and its ingest workers.

With `server.workers: 0` the collector serves HTTP itself. With N > 0 it binds the HTTP
port, starts N worker processes that accept on it (`workers.edge`), and serves its own
app on a private unix socket, for the routes the workers pass on.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import uvicorn

from flext_observability.app import create_app
from flext_observability.collector import Collector
from flext_observability.config import Config
from flext_observability.reload.reloader import Reloader
from flext_observability.serving import Server, http_options, tune_process
from flext_observability.tls import uvicorn_ssl_options
from flext_observability.workers.pool import WorkerPool


def listen(host: str, port: int) -> socket.socket:
    """The HTTP listening socket (shared by the workers); OSError names `server.http_port`."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"cannot listen on {host}:{port} (server.http_port): {exc.strerror}"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(config: Config, log_format: str, log_level: str,
          config_path: Path | None = None) -> bool:
    """Run until SIGTERM/SIGINT; False if the daemon could not start. The HTTP port is
    bound first (OSError if taken), then the collector starts, then HTTP is served."""
    tune_process()
    listener = listen(config.server.host, config.server.http_port)
    try:
        app = create_app(config, config_path)
        collector: Collector = app.state.collector
        reloader: Reloader = app.state.reloader
        options = http_options(config.server, collector.telemetry)
        if not config.server.workers:
            server = Server(uvicorn.Config(
                app, host=config.server.host, port=config.server.http_port, **options,
                **uvicorn_ssl_options(config.server.tls),
            ), collector, reloader=reloader)
            server.run(sockets=[listener])
            return server.started
        with tempfile.TemporaryDirectory(prefix="flext-observability-") as private:
            uds = str(Path(private) / "collector.sock")
            pool = WorkerPool(config, listener, uds, log_format, log_level)
            reloader.on_applied.append(pool.reload)
            server = Server(uvicorn.Config(app, uds=uds, **options), collector, pool, reloader)
            server.run()
        return server.started
    finally:
        listener.close()
