"""Pushed bodies in the Prometheus text format (0.0.4), read with prometheus_client's parser,
checked as the Pushgateway checks them, and with the group's labels applied to every series
(its `sanitizeLabels`: the grouping labels replace the body's, `instance=""` is added when
absent, the labels are sorted)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from operator import itemgetter
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
    _series: frozenset[tuple[str, LabelKey]] | None = field(default=None, compare=False)

    def names(self) -> frozenset[str]:
        """The names the family holds: another kind may not hold one."""
        return frozenset((self.name, self.declared or self.name))

    def series(self) -> frozenset[tuple[str, LabelKey]]:
        if self._series is None:
            self._series = frozenset((name, labels) for name, labels, _ in self.samples)
        return self._series


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
    plain = plain_families(text, grouping)
    if plain is not None:
        return plain
    # prometheus_client names a counter `x` whether its TYPE line says `x` or `x_total`.
    counters = {
        name.removesuffix(b"_total").decode("utf-8", "replace"): name.decode("utf-8", "replace")
        for name in _COUNTER_TYPE.findall(body)
    }
    return read_families(text, grouping, counters)


def read_families(
    text: str, grouping: dict[str, str], counters: dict[str, str]
) -> dict[str, PushedFamily]:
    """`parse_text` for any body: line by line (`fast_families`), or by prometheus_client's
    parser. `counters`: the names counters' TYPE lines give, by prometheus_client's name."""
    families: dict[str, PushedFamily] = {}
    parsed = fast_families(text)
    if parsed is None:
        try:
            parsed = [
                (m.name, m.type, m.documentation,
                 [(s.name, tuple(s.labels.items()), s.value,
                   None if s.timestamp is None else float(s.timestamp)) for s in m.samples])
                for m in text_string_to_metric_families(text)
            ]
        except ValueError as exc:
            raise BadBody("malformed", f"text format parsing error: {exc}") from None
    group = tuple(sorted(grouping.items()))
    if len(_SANITIZED) > CACHE_ENTRIES:
        _SANITIZED.clear()
    for base, kind, documentation, samples in parsed:
        name = exposition_name(base, kind)
        # A family with no sample is left out, as the Go parser does.
        if name in GROUP_FAMILIES or not samples:
            continue
        family = families.get(name)
        if family is None:
            family = families[name] = PushedFamily(
                name, base, kind, documentation,
                declared=counters.get(base, name) if kind == "counter" else name,
            )
        elif family.kind != kind:
            raise BadBody("malformed", f"text format parsing error: second TYPE for {name}")
        for sample_name, pairs, value, timestamp in samples:
            if timestamp is not None:
                raise BadBody("invalid", "pushed metrics must not have timestamps")
            key = _SANITIZED.get((group, pairs))
            if key is None:
                key = _sanitized(sample_name, pairs, grouping)
                _SANITIZED[group, pairs] = key
            family.samples.append((sample_name, key, value))
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


# The text-format lines `fast_families` reads itself (no escapes, quotes only around label
# values, no timestamp, no exemplar); a body with any other line goes to prometheus_client.
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SAMPLE = re.compile(
    r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\",?)*)\})?[ \t]+(\S+)"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"')
_ALLOWED = {"counter": ("",), "gauge": ("",), "summary": ("_count", "_sum", ""),
            "histogram": ("_count", "_sum", "_bucket")}
_TYPES = frozenset({"counter", "gauge", "summary", "histogram", "untyped", "unknown",
                    "gaugehistogram", "info", "stateset"})
ParsedFamily = tuple[str, str, str, list[tuple[str, LabelKey, float, float | None]]]


def _value(text: str) -> float | None:
    if "_" in text:
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


def fast_families(text: str) -> list[ParsedFamily] | None:
    """What prometheus_client's `text_string_to_metric_families` reads from `text` (as
    (name, type, help, samples)), for the plain lines it is written for; None for a body
    with another line (prometheus_client's parser reads it then)."""
    if "\\" in text:
        return None
    found: list[ParsedFamily] = []
    name, documentation, typ = "", "", "untyped"
    samples: list[tuple[str, LabelKey, float, float | None]] = []
    if len(_PAIRS) > CACHE_ENTRIES:
        _PAIRS.clear()
    allowed: tuple[str, ...] = ()

    def build() -> None:
        base, kept = name, samples
        if typ == "counter":
            if base.endswith("_total"):
                base = base[:-6]
            else:
                kept = [(s + "_total", labels, v, t) for s, labels, v, t in samples]
        found.append((base, "unknown" if typ == "untyped" else typ, documentation, kept))

    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if '"' in line:
                return None
            parts = line.split(None, 3)
            if len(parts) < 2 or (len(parts) > 2 and parts[1] not in ("TYPE", "HELP")):
                continue
            if len(parts) == 2:
                return None
            candidate = parts[2]
            if not _NAME.fullmatch(candidate):
                return None
            if parts[1] == "HELP":
                if candidate != name:
                    if name:
                        build()
                    name, typ, samples, allowed = candidate, "untyped", [], (candidate,)
                documentation = parts[3] if len(parts) == 4 else ""
            else:
                if len(parts) < 4 or parts[3] not in _TYPES:
                    return None
                if candidate != name:
                    if name:
                        build()
                    name, documentation, samples = candidate, "", []
                typ = parts[3]
                allowed = tuple(name + n for n in _ALLOWED.get(typ, ("",)))
            continue
        match = _SAMPLE.fullmatch(line)
        if match is None:
            return None
        sample_name, label_text, value_text = match.groups()
        value = _value(value_text)
        if value is None:
            return None
        labels: LabelKey = ()
        if label_text:
            found_pairs = _PAIRS.get(label_text)
            if found_pairs is None:
                found_pairs = _label_pairs(label_text)
                if found_pairs is None:
                    return None
                _PAIRS[label_text] = found_pairs
            labels = found_pairs
        if sample_name in allowed:
            samples.append((sample_name, labels, value, None))
            continue
        if name:
            build()
        name, documentation, typ, samples, allowed = "", "", "untyped", [], ()
        found.append((sample_name, "unknown", "", [(sample_name, labels, value, None)]))
    if name:
        build()
    return found


# `plain_families`: a plain sample line (no space around, one before the value, no `_` in
# it, no timestamp), a plain label text (checked once per label text and group).
_SAMPLE_LINE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}\n]*)\})? ([^\s_]+)$", re.MULTILINE
)
_LABEL_TEXT = re.compile(r'(?:[a-zA-Z_][a-zA-Z0-9_]*="[^"\n]*",?)*')
_INTEGER = re.compile(r"^[+-]?\d+$", re.MULTILINE)


@dataclass(slots=True)
class _Reading:
    """A family as `plain_families` reads it: its header, and its samples by column."""

    name: str
    kind: str = "untyped"
    help: str = ""
    allowed: frozenset[str] = frozenset()
    names: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)


def plain_families(text: str, grouping: dict[str, str]) -> dict[str, PushedFamily] | None:
    """`parse_text`'s families for the usual body, read by blocks rather than by lines:
    HELP and TYPE lines, each followed by sample lines of that family with plain labels
    and values (no escape, timestamp or exemplar); None for any other body (then
    `read_families` reads it). A block's lines are read by one regular expression (each
    line must match it), the group's labels applied by label text (remembered per group)."""
    if "\\" in text:
        return None
    readings: list[_Reading] = []
    current: _Reading | None = None
    for index, part in enumerate(("\n" + text).split("\n#")):
        block = part
        if index:
            end = part.find("\n")
            line, block = (part, "") if end < 0 else (part[:end], part[end:])
            header = _header(("#" + line).strip())
            if header is None:
                return None
            if header:
                word, candidate, rest = header
                if current is None or candidate != current.name:
                    current = _Reading(candidate)
                    readings.append(current)
                if word == "HELP":
                    current.help = rest
                    if current.kind == "untyped":
                        current.allowed = frozenset((candidate,))
                else:
                    current.kind = rest
                    current.allowed = frozenset(candidate + n for n in _ALLOWED.get(rest, ("",)))
        block = block.strip("\n")
        if not block:
            continue
        samples = _SAMPLE_LINE.findall(block)
        if len(samples) != block.count("\n") + 1:
            return None  # a line of another form
        names = [sample[0] for sample in samples]
        if current is None or not current.allowed.issuperset(names):
            return None
        current.names += names
        current.labels += [sample[1] for sample in samples]
        current.values += [sample[2] for sample in samples]
    group = tuple(sorted(grouping.items()))
    known = _GROUP_LABELS.get(group)
    if known is None or len(known.texts) > CACHE_ENTRIES:
        if len(_GROUP_LABELS) > _GROUPS_HELD:
            _GROUP_LABELS.clear()
        known = _GROUP_LABELS[group] = _GroupLabels()
    families: dict[str, PushedFamily] = {}
    for reading in readings:
        family = _family(reading, grouping, known)
        if family is None:
            return None
        # A family with no sample is left out, as the Go parser does.
        if family.samples and family.name not in GROUP_FAMILIES:
            if family.name in families:
                return None
            families[family.name] = family
    return families


def _header(line: str) -> tuple[str, str, str] | tuple[()] | None:
    """(HELP or TYPE, name, the rest) of a comment line, () for a plain comment, None for a
    line `fast_families` would not read."""
    if '"' in line:
        return None
    parts = line.split(None, 3)
    if len(parts) < 2 or (len(parts) > 2 and parts[1] not in ("TYPE", "HELP")):
        return ()
    if len(parts) == 2 or not _NAME.fullmatch(parts[2]):
        return None
    rest = parts[3] if len(parts) == 4 else ""
    if parts[1] == "TYPE" and rest not in _TYPES:
        return None
    return parts[1], parts[2], rest


def _family(
    reading: _Reading, grouping: dict[str, str], known: _GroupLabels
) -> PushedFamily | None:
    """The family of a reading with the group's labels; None where `read_families` must
    judge (a label set it does not take, a value it does not read, a series twice). A
    counter's declared name is its TYPE line's (a body where another TYPE line names it
    too has two families of one name: `read_families` reads it)."""
    base, names, kind = reading.name, reading.names, reading.kind
    if kind == "counter":
        if base.endswith("_total"):
            base = base[:-6]
        else:
            names = [name + "_total" for name in names]
    kind = "unknown" if kind == "untyped" else kind
    values = _values(reading.values)
    found = list(map(known.texts.get, reading.labels))
    keys = _learn(reading, found, grouping, known)
    if values is None or keys is None:
        return None
    # The group's label sets are kept one object per set (`_learn`): a series twice is
    # the same object twice.
    if len(set(map(id, keys))) != len(keys) and (
        len(set(names)) == 1 or len(frozenset(zip(names, keys, strict=True))) != len(keys)
    ):
        return None
    name = exposition_name(base, kind)
    return PushedFamily(
        name, base, kind, reading.help, list(zip(names, keys, values, strict=True)),
        declared=reading.name if kind == "counter" else name,
    )


def _learn(
    reading: _Reading, found: list[LabelKey | None], grouping: dict[str, str],
    known: _GroupLabels,
) -> list[LabelKey] | None:
    """`found` with the label sets not known for the group yet filled in; None for one
    that `_label_pairs` does not take."""
    if None not in found:
        return found  # type: ignore[return-value]
    keys: list[LabelKey] = []
    for text, key in zip(reading.labels, found, strict=True):
        if key is None:
            pairs = _label_pairs(text) if _LABEL_TEXT.fullmatch(text) else None
            if pairs is None:
                return None
            made = _sanitized(reading.names[len(keys)], pairs, grouping)
            key = known.texts[text] = known.keys.setdefault(made, made)
        keys.append(key)
    return keys


def _values(texts: list[str]) -> list[float] | None:
    """The values as prometheus_client reads them (integers as int); None for one that it
    would not read."""
    try:
        if _INTEGER.search("\n".join(texts)) is None:
            return list(map(float, texts))
        return list(map(int, texts))
    except ValueError:
        values = [_value(text) for text in texts]
        return None if None in values else values  # type: ignore[return-value]


# Label sets seen lately, as read (`fast_families`) and as sanitized for their group.
CACHE_ENTRIES = 200_000
_PAIRS: dict[str, LabelKey] = {}
_SANITIZED: dict[tuple[LabelKey, LabelKey], LabelKey] = {}


@dataclass(slots=True)
class _GroupLabels:
    """A group's label sets (`plain_families`): by label text as read, and each set once."""

    texts: dict[str, LabelKey] = field(default_factory=dict)
    keys: dict[LabelKey, LabelKey] = field(default_factory=dict)


# Per group (its sorted labels), its label sets.
_GROUP_LABELS: dict[LabelKey, _GroupLabels] = {}
_GROUPS_HELD = 1000


def _sanitized(sample_name: str, pairs: LabelKey, grouping: dict[str, str]) -> LabelKey:
    """A sample's labels with its group's (the Pushgateway's `sanitizeLabels`)."""
    labels = dict(pairs)
    for label in labels:
        if label.startswith("__"):
            raise BadBody(
                "invalid", f"metric {sample_name} has a label with an invalid name: {label}"
            )
    labels.update(grouping)
    labels.setdefault("instance", "")
    return tuple(sorted(labels.items()))


def _label_pairs(label_text: str) -> LabelKey | None:
    """The labels of a sample's `{...}` text as read; None for a name given twice or a
    reserved one (prometheus_client's parser says what is wrong then)."""
    pairs = tuple(_LABEL.findall(label_text))
    names = {name for name, _ in pairs}
    if len(names) != len(pairs) or any(name.startswith("__") for name in names):
        return None
    return pairs


def _labels_text(labels: LabelKey) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels)


_VALUE = itemgetter(2)


def encode_value(value: float) -> float | str:
    """JSON holds no NaN or ±Inf: those are kept as their names."""
    return value if math.isfinite(value) else repr(value)


def encode_families(families: dict[str, PushedFamily]) -> list[list[object]]:
    """The families as orjson serializes them (tuples as arrays)."""
    return [
        [f.name, f.base, f.kind, f.help,
         # (a sum is finite when every term is, or when it overflowed: then listed)
         f.samples if math.isfinite(sum(map(_VALUE, f.samples)))
         else [(s, labels, encode_value(v)) for s, labels, v in f.samples],
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
