"""Figures taken several times in one run: the median, the spread, ratios of medians."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

# How many times each figure is taken (BENCH_REPEATS to change).
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))


@dataclass
class Figure:
    """One figure's values, one per repetition."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else 0.0

    @property
    def spread(self) -> float:
        """(max - min) / median: how far apart the repetitions are."""
        return (max(self.values) - min(self.values)) / self.median if self.median else 0.0

    def text(self) -> str:
        """`median samples/s (min-max, spread)`."""
        return (f"{self.median:>10,.0f}  ({min(self.values):,.0f}-{max(self.values):,.0f},"
                f" spread {self.spread:.0%})")

    def ratio(self, other: Figure) -> float:
        return self.median / other.median if other.median else 0.0


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} cores"
