"""Parse a Prometheus text exposition (0.0.4 or OpenMetrics 1.0) into families and series, and
list how two of them differ, series by series."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}

Series = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Exposition:
    # family name -> {"TYPE": ..., "HELP": ..., "UNIT": ...} as declared
    families: dict[str, dict[str, str]] = field(default_factory=dict)
    samples: dict[Series, float] = field(default_factory=dict)

    def without(self, excluded: set[str]) -> Exposition:
        """Without the families (and their series) named in ``excluded`` or starting
        with ``flext_`` (the collector's own telemetry)."""

        def kept(family: str) -> bool:
            return family not in excluded and not family.startswith("flext_")

        families = {name: meta for name, meta in self.families.items() if kept(name)}
        samples = {s: v for s, v in self.samples.items() if kept(family_of(s[0], self.families))}
        return Exposition(families, samples)


def family_of(sample_name: str, families: dict[str, dict[str, str]]) -> str:
    """The family a sample belongs to: its own name, or that without a type suffix."""
    if sample_name in families:
        return sample_name
    for suffix in ("_total", "_bucket", "_count", "_sum", "_created", "_info"):
        base = sample_name.removesuffix(suffix)
        if base != sample_name and base in families:
            return base
    return sample_name


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), text)


def _labels(text: str, line: str) -> tuple[tuple[str, str], ...]:
    labels = []
    position = 0
    pattern = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')
    while position < len(text):
        match = pattern.match(text, position)
        if match is None:
            raise ValueError(f"bad labels in {line!r}")
        if match.group(2):  # a label with an empty value is no label (Prometheus' data model)
            labels.append((match.group(1), _unescape(match.group(2))))
        position = match.end()
    return tuple(sorted(labels))


def parse(text: str) -> Exposition:
    exposition = Exposition()
    for line in text.splitlines():
        if not line or line == "# EOF":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("TYPE", "HELP", "UNIT"):
                value = parts[3] if len(parts) > 3 else ""
                if parts[1] == "HELP":
                    value = _unescape(value)
                exposition.families.setdefault(parts[2], {})[parts[1]] = value
            continue
        name_match = _NAME.match(line)
        if name_match is None:
            raise ValueError(f"bad sample line {line!r}")
        name, rest = name_match.group(), line[name_match.end():]
        labels: tuple[tuple[str, str], ...] = ()
        if rest.startswith("{"):
            end = _closing_brace(rest, line)
            labels = _labels(rest[1:end], line)
            rest = rest[end + 1:]
        value = rest.split()[0]
        exposition.samples[(name, labels)] = float(value)
    return exposition


def _closing_brace(text: str, line: str) -> int:
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "}" and not quoted:
            return index
    raise ValueError(f"no closing brace in {line!r}")


def show(series: Series) -> str:
    name, labels = series
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def differences(ours: Exposition, theirs: Exposition, series: bool = True) -> list[str]:
    """Every way ``ours`` differs from ``theirs`` (the OpenTelemetry Collector), one line each:
    families (TYPE, HELP, UNIT) and, with ``series``, every series' labels and value."""
    found = []
    for family in sorted(ours.families.keys() | theirs.families.keys()):
        mine, other = ours.families.get(family), theirs.families.get(family)
        if mine is None or other is None:
            found.append(f"family {family}: only in {'otelcol' if mine is None else 'ours'}")
            continue
        found.extend(f"family {family}: {key} ours={mine.get(key)!r} otelcol={other.get(key)!r}"
                     for key in ("TYPE", "HELP", "UNIT") if mine.get(key) != other.get(key))
    for one in sorted(ours.samples.keys() | theirs.samples.keys()) if series else ():
        mine_value, other_value = ours.samples.get(one), theirs.samples.get(one)
        if mine_value is None or other_value is None:
            where = "otelcol" if mine_value is None else "ours"
            found.append(f"series {show(one)}: only in {where}")
        elif not _same(mine_value, other_value):
            found.append(f"series {show(one)}: value ours={mine_value!r} otelcol={other_value!r}")
    return found
