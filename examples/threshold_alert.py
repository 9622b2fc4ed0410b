"""Fire an alert while a value is above a threshold, resolve it when the value drops.

    make run                              # the collector on 127.0.0.1:4318
    .venv/bin/python examples/threshold_alert.py
    # meanwhile: curl -s 127.0.0.1:4318/api/v1/alerts

The value (a simulated queue depth) is also sent as the gauge `example_queue_depth`.
"""

from __future__ import annotations

import argparse
import math
import time

try:
    from flext_observability import get_global_factory
except ModuleNotFoundError:
    raise SystemExit(
        "flext_observability is not installed for this Python. From the repository: "
        "`make install`, then `.venv/bin/python examples/threshold_alert.py`"
    ) from None

ALERT = "QueueDepthHigh"
LABELS = {"queue": "orders"}


def queue_depth(step: int) -> float:
    """Rises above 100 and falls back below it over 20 steps."""
    return 80 + 40 * math.sin(math.pi * step / 10)


def main(iterations: int, threshold: float, interval: float) -> None:
    factory = get_global_factory()
    firing = False
    for step in range(iterations):
        depth = queue_depth(step)
        factory.metrics.record_gauge("example_queue_depth", depth, labels=LABELS)
        if depth > threshold and not firing:
            result = factory.alerts.fire(
                ALERT, severity="warning", labels=LABELS,
                summary=f"queue depth {depth:.0f} is above {threshold:.0f}",
            )
            firing = result.is_success
            print(f"step {step}: depth {depth:.0f} -> fire: {result.error or 'ok'}")
        elif depth <= threshold and firing:
            result = factory.alerts.resolve(ALERT, severity="warning", labels=LABELS)
            firing = result.is_failure
            print(f"step {step}: depth {depth:.0f} -> resolve: {result.error or 'ok'}")
        else:
            print(f"step {step}: depth {depth:.0f}")
        time.sleep(interval)
    if firing:
        factory.alerts.resolve(ALERT, severity="warning", labels=LABELS)
    delivered = factory.flush(5)
    print(f"sent to {factory.config.endpoint}: {'yes' if delivered else 'NO'}; "
          f"{factory.client.stats}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--threshold", type=float, default=100.0)
    parser.add_argument("--interval", type=float, default=0.25)
    args = parser.parse_args()
    main(args.iterations, args.threshold, args.interval)
