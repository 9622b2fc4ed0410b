"""`import flext_observability` is light, exports exactly the SDK names of CONTRACT §7 (the
seed's public API), and ships `py.typed`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import flext_observability

CONTRACT_NAMES = {
    "FlextResult", "FlextMetric", "FlextTrace", "FlextAlert", "FlextHealthCheck", "FlextLogEntry",
    "flext_create_metric", "flext_create_trace", "flext_create_alert",
    "flext_create_health_check", "flext_create_log_entry", "FlextMetricsService",
    "FlextTracingService", "FlextAlertService", "FlextHealthService",
    "FlextObservabilityMasterFactory", "get_global_factory", "FlextObservabilityConfig",
    "flext_monitor_function", "FlextObservabilityClient", "FlextObservabilityServices",
    "FlextObservabilityMonitor", "FlextObservabilityConstants", "FlextObservabilityTypes",
    "FlextObservabilityProtocols",
}
HEAVY = "{'fastapi', 'uvicorn', 'grpc', 'starlette'}"
DAEMON = (
    "{'flext_observability.app', 'flext_observability.receivers', "
    "'flext_observability.pipeline', 'flext_observability.exporters', 'flext_observability.cli'}"
)


def run(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_exports_are_the_contract_names():
    assert set(flext_observability.__all__) == CONTRACT_NAMES
    for name in CONTRACT_NAMES:
        assert getattr(flext_observability, name) is not None
    assert set(dir(flext_observability)) >= CONTRACT_NAMES


def test_import_loads_no_server_modules():
    run(
        "import flext_observability, sys\n"
        f"assert not any(m.split('.')[0] in {HEAVY} for m in sys.modules)\n"
    )


def test_using_the_whole_sdk_loads_no_server_modules():
    run(
        "import sys\n"
        "from flext_observability import *\n"
        "get_global_factory()\n"
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY}]\n"
        f"daemon = [m for m in sys.modules if any(m.startswith(d) for d in {DAEMON})]\n"
        "assert not heavy and not daemon, (heavy, daemon)\n"
    )


def test_py_typed_is_built_into_the_package(tmp_path):
    """setuptools' build_py (what a wheel holds) copies py.typed beside the modules."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py",
         "--build-lib", str(tmp_path)],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "flext_observability" / "py.typed").is_file()
    assert (tmp_path / "flext_observability" / "sdk" / "services.py").is_file()
