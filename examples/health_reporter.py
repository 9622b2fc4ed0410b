"""Report this host's health with named checks, periodically, to a local collector.

    make run                              # the collector on 127.0.0.1:4318
    .venv/bin/python examples/health_reporter.py    # then: curl -s 127.0.0.1:4318/api/v1/health

The overall status is the worst of the checks. When the reports stop, the collector marks
the service `stale` after `ttl_seconds`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from typing import Any

try:
    from flext_observability import get_global_factory
except ModuleNotFoundError:
    raise SystemExit(
        "flext_observability is not installed for this Python. From the repository: "
        "`make install`, then `.venv/bin/python examples/health_reporter.py`"
    ) from None


def disk_check(path: str = "/") -> dict[str, Any]:
    usage = shutil.disk_usage(path)
    used = 100 * usage.used / usage.total
    status = "healthy" if used < 85 else "degraded" if used < 95 else "unhealthy"
    return {"status": status, "message": f"{path} is {used:.0f}% full", "observed_value": used}


def load_check() -> dict[str, Any]:
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    status = "healthy" if load < 1.5 else "degraded" if load < 4 else "unhealthy"
    return {"status": status, "message": f"1-minute load per CPU {load:.2f}",
            "observed_value": load}


def main(iterations: int, interval: float) -> None:
    factory = get_global_factory()
    for i in range(iterations):
        result = factory.health.report(
            checks={"disk": disk_check(), "load": load_check()},
            ttl_seconds=max(3 * interval, 1.0),
        )
        if result.is_success:
            report = result.unwrap()
            print(f"report {i + 1}: {report.status.value} "
                  f"({', '.join(f'{k}={c.status.value}' for k, c in report.checks.items())})")
        else:
            print(f"report {i + 1} not sent: {result.error}")
        factory.flush(5)
        if i + 1 < iterations:
            time.sleep(interval)
    print(f"{factory.client.stats}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    main(args.iterations, args.interval)
