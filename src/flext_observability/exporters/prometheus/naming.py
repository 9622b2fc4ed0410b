"""OpenTelemetry names to Prometheus names.

Follows the OpenTelemetry "Prometheus and OpenMetrics Compatibility" specification as the
Collector's `pkg/translator/prometheus` implements it. Results are cached: these run per
metric and per data point.
"""

from __future__ import annotations

import re
from functools import lru_cache

# UCUM units as OpenTelemetry writes them -> the words Prometheus names use.
_UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "B": "bytes",
    "KB": "kilobytes",
    "MB": "megabytes",
    "GB": "gigabytes",
    "TB": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
    "$": "dollars",
}
# The unit after "/", singular: `By/s` -> `bytes_per_second`.
_PER_UNITS = {
    "s": "second",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}

_WORD = re.compile(r"[a-zA-Z0-9]+")
_NOT_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9:]+")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@lru_cache(maxsize=4096)
def metric_name(name: str, unit: str, *, kind: str, monotonic: bool) -> str:
    """The Prometheus name of an OTLP metric, with its unit and type suffixes.

    `kind` is "gauge", "sum", "histogram" or "summary"; `monotonic` matters for sums. The
    result is empty only when neither the name nor the unit has a letter or digit.
    """
    words = _WORD.findall(name)
    main_unit, _, per_unit = unit.partition("/")
    suffix = _unit_words(main_unit, _UNITS)
    if suffix and suffix not in words:
        words.append(suffix)
    per_suffix = _unit_words(per_unit, _PER_UNITS)
    if per_suffix and per_suffix not in words:
        words += ("per", per_suffix)
    if kind == "sum" and monotonic:
        words = [word for word in words if word != "total"] + ["total"]
    if kind == "gauge" and unit == "1":
        words = [word for word in words if word != "ratio"] + ["ratio"]
    joined = "_".join(words)
    return f"_{joined}" if joined[:1].isdigit() else joined


def _unit_words(unit: str, names: dict[str, str]) -> str:
    """The words of one side of a unit; annotations such as `{packets}` are no unit."""
    unit = unit.strip()
    if not unit or "{" in unit or "}" in unit:
        return ""
    return "_".join(_WORD.findall(names.get(unit, unit)))


@lru_cache(maxsize=4096)
def native_metric_name(name: str) -> str:
    """A native metric's name for Prometheus: valid names as they are, dotted ones translated."""
    if _METRIC_NAME.fullmatch(name):
        return name
    translated = _NOT_METRIC_CHARS.sub("_", name)
    return f"_{translated}" if translated[:1].isdigit() else translated


@lru_cache(maxsize=1024)
def unit_suffix(unit: str) -> str:
    """The words a unit adds to a name (`s` -> `seconds`, `By/s` -> `bytes_per_second`);
    empty for no unit, `1` and annotations such as `{requests}`."""
    main_unit, _, per_unit = unit.partition("/")
    words = [_unit_words(main_unit, _UNITS)]
    per = _unit_words(per_unit, _PER_UNITS)
    if per:
        words += ["per", per]
    return "_".join(word for word in words if word)
