"""Pushed bodies in the Prometheus text format (0.0.4), read with prometheus_client's parser,
checked as the Pushgateway checks them, and with the group's labels applied to every series
(its `sanitizeLabels`: the grouping labels replace the body's, `instance=""` is added when
absent, the labels are sorted)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

LabelKey = tuple[tuple[str, str], ...]
Sample = tuple[str, LabelKey, float]

# The Pushgateway's own per-group series: a body's families of these names are replaced.
PUSH_TIME = "push_time_seconds"
PUSH_FAILURE_TIME = "push_failure_time_seconds"
GROUP_FAMILIES = frozenset({PUSH_TIME, PUSH_FAILURE_TIME})

PROTOBUF = "application/vnd.google.protobuf"
_COUNTER_TYPE = re.compile(rb"^#[ \t]+TYPE[ \t]+(\S+)[ \t]+counter[ \t]*$", re.MULTILINE)


class BadBody(ValueError):
    """A body the Pushgateway would refuse with 400: `reason` is what refused_items_total
    counts (`malformed`: not the text format; `invalid`: valid text, refused content)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(slots=True)
class PushedFamily:
    """One family of a group: `name` is its exposition name (a counter's with `_total`),
    `base` prometheus_client's name for it (a counter's without), `declared` its name in the
    body (a counter's as its TYPE line gave it: the Pushgateway's name for the family)."""

    name: str
    base: str
    kind: str
    help: str
    samples: list[Sample] = field(default_factory=list)
    declared: str = ""

    def names(self) -> frozenset[str]:
        """The names the family holds: another kind may not hold one."""
        return frozenset((self.name, self.declared or self.name))

    def series(self) -> frozenset[tuple[str, LabelKey]]:
        return frozenset((name, labels) for name, labels, _ in self.samples)


def exposition_name(base: str, kind: str) -> str:
    return base + "_total" if kind == "counter" else base


def parse_text(body: bytes, grouping: dict[str, str]) -> dict[str, PushedFamily]:
    """The families of a text-format body by exposition name, with the group's labels; raises
    BadBody for what the Pushgateway refuses (unparsable text, a timestamp, a `__` label, the
    same series twice)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody("malformed", f"text format parsing error: not UTF-8: {exc}") from None
    families: dict[str, PushedFamily] = {}
    # prometheus_client names a counter `x` whether its TYPE line says `x` or `x_total`.
    counters = {
        name.removesuffix(b"_total").decode("utf-8", "replace"): name.decode("utf-8", "replace")
        for name in _COUNTER_TYPE.findall(body)
    }
    try:
        parsed = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise BadBody("malformed", f"text format parsing error: {exc}") from None
    for metric in parsed:
        name = exposition_name(metric.name, metric.type)
        # A family with no sample is left out, as the Go parser does.
        if name in GROUP_FAMILIES or not metric.samples:
            continue
        family = families.get(name)
        if family is None:
            family = families[name] = PushedFamily(
                name, metric.name, metric.type, metric.documentation,
                declared=counters.get(metric.name, name) if metric.type == "counter" else name,
            )
        elif family.kind != metric.type:
            raise BadBody("malformed", f"text format parsing error: second TYPE for {name}")
        for sample in metric.samples:
            if sample.timestamp is not None:
                raise BadBody("invalid", "pushed metrics must not have timestamps")
            labels = dict(sample.labels)
            for label in labels:
                if label.startswith("__"):
                    raise BadBody(
                        "invalid",
                        f"metric {sample.name} has a label with an invalid name: {label}",
                    )
            labels.update(grouping)
            labels.setdefault("instance", "")
            family.samples.append((sample.name, tuple(sorted(labels.items())), sample.value))
    for family in families.values():
        seen: set[tuple[str, LabelKey]] = set()
        for sample_name, labels, _ in family.samples:
            if (sample_name, labels) in seen:
                raise BadBody(
                    "invalid",
                    f"metric {sample_name}{{{_labels_text(labels)}}} was collected before "
                    "with the same name and label values",
                )
            seen.add((sample_name, labels))
    return families


def _labels_text(labels: LabelKey) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels)


def encode_value(value: float) -> float | str:
    """JSON holds no NaN or ±Inf: those are kept as their names."""
    return value if math.isfinite(value) else repr(value)


def encode_families(families: dict[str, PushedFamily]) -> list[list[object]]:
    return [
        [f.name, f.base, f.kind, f.help,
         [[s, [list(pair) for pair in labels], encode_value(v)] for s, labels, v in f.samples],
         f.declared]
        for f in families.values()
    ]


def decode_families(raw: list[Any]) -> dict[str, PushedFamily]:
    families: dict[str, PushedFamily] = {}
    for name, base, kind, help_text, samples, declared in raw:
        families[str(name)] = PushedFamily(
            str(name), str(base), str(kind), str(help_text),
            [(s, tuple((k, v) for k, v in labels), float(v)) for s, labels, v in samples],
            str(declared),
        )
    return families
