"""Decorated functions, some of them failing, reported to a local collector.

    make run                     # in another terminal: the collector on 127.0.0.1:4318
    .venv/bin/python examples/worker.py
    # then: curl -s 127.0.0.1:4318/metrics | grep flext_function

Each call adds to `flext_function_calls_total{function, outcome}` and
`flext_function_duration_seconds`, and sends a span (the handler's span is the parent of
the parse span). Set FLEXT_OBS_ENDPOINT to use another collector.
"""

from __future__ import annotations

import argparse
import asyncio
import random

try:
    from flext_observability import flext_monitor_function, get_global_factory
except ModuleNotFoundError:
    raise SystemExit(
        "flext_observability is not installed for this Python. From the repository: "
        "`make install`, then `.venv/bin/python examples/worker.py`"
    ) from None

PRICES = {"apple": 0.5, "pear": 0.75, "plum": 0.2}


@flext_monitor_function
def parse_order(order: dict[str, object]) -> tuple[str, int]:
    item, quantity = str(order["item"]), order["quantity"]
    if item not in PRICES:
        raise KeyError(f"unknown item {item!r}")
    if not isinstance(quantity, int) or quantity <= 0:
        raise ValueError(f"quantity must be a positive integer, not {quantity!r}")
    return item, quantity


@flext_monitor_function("worker.handle_order")
def handle_order(order: dict[str, object]) -> float:
    item, quantity = parse_order(order)
    return PRICES[item] * quantity


@flext_monitor_function
async def fetch_orders(rng: random.Random, count: int) -> list[dict[str, object]]:
    await asyncio.sleep(0.01)  # stands in for a database or a queue
    items = [*PRICES, "durian"]
    return [{"item": rng.choice(items), "quantity": rng.randint(-1, 5)} for _ in range(count)]


async def main(iterations: int) -> None:
    rng = random.Random(7)
    total, failures = 0.0, 0
    for _ in range(iterations):
        for order in await fetch_orders(rng, 10):
            try:
                total += handle_order(order)
            except (KeyError, ValueError) as exc:
                failures += 1
                print(f"order refused: {exc}")
    factory = get_global_factory()
    delivered = await asyncio.to_thread(factory.flush, 5)
    print(f"revenue {total:.2f}, {failures} failed orders")
    print(f"sent to {factory.config.endpoint}: {'yes' if delivered else 'NO'}; "
          f"{factory.client.stats}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5)
    asyncio.run(main(parser.parse_args().iterations))
