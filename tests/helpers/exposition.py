"""Reading values out of a Prometheus text exposition (`GET /metrics`) in tests."""

from __future__ import annotations


def _matches(text: str, name: str, labels: dict[str, str]) -> list[float]:
    return [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
        and all(f'{k}="{v}"' in line for k, v in labels.items())
    ]


def sample(text: str, name: str, **labels: str) -> float | None:
    """The first series of `name` with these labels (others may vary); None if none."""
    found = _matches(text, name, labels)
    return found[0] if found else None


def total(text: str, name: str, **labels: str) -> float:
    """The sum over every series of `name` with these labels; 0 if none."""
    return sum(_matches(text, name, labels))
