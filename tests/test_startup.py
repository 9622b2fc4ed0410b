"""A second collector on a taken port or queue directory exits non-zero naming it, and claims
to have started only once every listener is bound; the queue's lock survives no crash."""

import httpx
import pytest

from helpers.procs import Daemon, free_port, poll


@pytest.fixture
def second(tmp_path, process_reaper):
    """`second(first, **overrides)`: a collector started beside `first`, not awaited."""

    def make(config_overrides, data_dir=None):
        daemon = Daemon(tmp_path / "second", config_overrides=config_overrides,
                        data_dir=data_dir)
        daemon.ready_url = None
        process_reaper.append(daemon)
        return daemon.start()

    return make


def exit_code(daemon, timeout=30.0):
    return poll(lambda: daemon.returncode, lambda rc: rc is not None, timeout, 0.05,
                f"{daemon.name} exits")


def test_a_taken_grpc_port_is_a_startup_error_naming_it(daemon_factory, second, tmp_path):
    first = daemon_factory()
    port = first.config["server"]["grpc_port"]
    clash = second({"server": {"grpc_port": port}})
    assert exit_code(clash) != 0
    log = clash.log_tail(200)
    assert f"127.0.0.1:{port} (server.grpc_port)" in log
    assert "collector started" not in log
    assert "Traceback" not in log
    assert httpx.get(f"{first.url}/healthz", timeout=5).status_code == 200


def test_a_queue_directory_in_use_names_it_and_the_pid_until_the_holder_dies(
    daemon_factory, second
):
    first = daemon_factory()
    clash = second({}, data_dir=first.data_dir)
    assert exit_code(clash) != 0
    log = clash.log_tail(200)
    assert str(first.data_dir) in log
    assert f"pid {first.pid}" in log
    assert "queue.path" in log
    assert "collector started" not in log

    first.kill9()  # the kernel drops the lock with the process
    clash.ready_url = f"{clash.url}/healthz"
    clash.start()
    assert httpx.get(f"{clash.url}/readyz", timeout=5).status_code == 200


def test_an_http_port_clash_exits_before_claiming_to_have_started(daemon_factory, second):
    first = daemon_factory()
    clash = second({"server": {"http_port": first.config["server"]["http_port"],
                               "grpc_port": free_port()}})
    assert exit_code(clash) != 0
    log = clash.log_tail(200)
    assert f"127.0.0.1:{first.config['server']['http_port']} (server.http_port)" in log
    assert "collector started" not in log


def test_collector_started_is_logged_once_everything_listens(daemon_factory):
    daemon = daemon_factory()
    line = poll(lambda: daemon.log_tail(200), lambda log: "collector started" in log, 10,
                0.05, "started line")
    grpc = daemon.config["server"]["grpc_port"]
    assert f"grpc=127.0.0.1:{grpc}" in line
