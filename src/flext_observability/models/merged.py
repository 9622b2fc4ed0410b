"""The rules of OTLP spans and log records that can be judged for a whole scope at once.

Protobuf merges every occurrence of a singular message field into one message, appending
the entries of its repeated fields. Decoding a traces or logs request with descriptors
that declare a scope's items (field 2) as one such message, with the item fields of
interest as repeated `bytes`, gives in one upb pass every occurrence of each field over
all the items of a scope, in order. A few C-level calls over those lists judge the rules
that hold for each occurrence: an item's id is the last occurrence of its field, so when
every occurrence is well-formed, every item's id is. Rules about an item as a whole (a
span's name, its end after its start) are left to the caller.

A field on the wire with another wire type than the one declared is an unknown field,
to these descriptors as to the real ones: neither reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "flext.merged"
_Field = descriptor_pb2.FieldDescriptorProto
# The shortest encoding of an attribute: its tag and a zero length.
_LEAST_ATTRIBUTE_BYTES = 2


class _Rules(NamedTuple):
    """The fields of one kind of item read here (name: field number); the ids among them
    (name: (the lengths allowed, 0 being absent; the all-zero id when it is refused));
    those that send the scope to the item-by-item walk when present at all."""

    fields: dict[str, int]
    ids: dict[str, tuple[frozenset[int], bytes | None]]
    absent: tuple[str, ...]


_TRACE_ID = (frozenset({0, 16}), bytes(16))
_SPAN_ID = (frozenset({0, 8}), bytes(8))


# By the items' field name in their scope (ScopeSpans.spans, ScopeLogs.log_records).
_RULES = {
    "spans": _Rules(
        {"trace_id": 1, "span_id": 2, "parent_span_id": 4, "attributes": 9, "links": 13},
        {"trace_id": _TRACE_ID, "span_id": _SPAN_ID, "parent_span_id": _SPAN_ID},
        ("links",),
    ),
    "log_records": _Rules(
        {"attributes": 6, "trace_id": 9, "span_id": 10},
        {"trace_id": (_TRACE_ID[0], None), "span_id": (_SPAN_ID[0], None)},
        (),
    ),
}


def _request_types() -> dict[str, Any]:
    """For each item kind, and for "raw" (each item's encoding as it came): the request
    type, whose resources (1) hold scopes (2) holding the items (2)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="flext_observability/merged.proto", package=_PACKAGE, syntax="proto3"
    )

    def message(name: str, fields: dict[str, int], type_name: str = "", label: int = 0) -> None:
        declared = proto.message_type.add(name=name)
        for field_name, number in fields.items():
            one = declared.field.add(
                name=field_name, number=number, label=label or _Field.LABEL_REPEATED
            )
            if type_name:
                one.type, one.type_name = _Field.TYPE_MESSAGE, type_name
            else:
                one.type = _Field.TYPE_BYTES

    def nest(name: str, items: str, label: int) -> None:
        message(f"{name}Scope", {"items": 2}, items, label)
        message(f"{name}Resource", {"scopes": 2}, f".{_PACKAGE}.{name}Scope")
        message(f"{name}Request", {"resources": 1}, f".{_PACKAGE}.{name}Resource")

    for kind, rules in _RULES.items():
        message(kind, rules.fields)
        nest(kind, f".{_PACKAGE}.{kind}", _Field.LABEL_OPTIONAL)  # merged
    nest("raw", "", _Field.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    named = pool.FindMessageTypeByName
    return {
        name: message_factory.GetMessageClass(named(f"{_PACKAGE}.{name}Request"))
        for name in (*_RULES, "raw")
    }


_REQUESTS = _request_types()


def cleared_scopes(
    kind: str,
    body: bytes,
    scopes: Iterable[tuple[int, int]],
    max_attributes: int,
    max_value_length: int,
) -> set[tuple[int, int]]:
    """Those of `scopes` ((resource, scope) indices) of `body`, a protobuf traces or logs
    request that the real type decoded (`kind`: its items' field, "spans" or
    "log_records"), whose every item has its ids well-formed where present, no links, at
    most `max_attributes` attributes and no attribute value longer than `max_value_length`
    (characters, or bytes for a bytes value)."""
    rules = _RULES[kind]
    # No value is longer than the body, nor than the encoding of its item.
    long_body = len(body) > max_value_length
    resources = _REQUESTS[kind].FromString(body).resources
    raw: Any = None
    cleared = set()
    for ri, si in scopes:
        items = resources[ri].scopes[si].items
        if any(getattr(items, name) for name in rules.absent) or not all(
            _ids_ok(getattr(items, name), *rule) for name, rule in rules.ids.items()
        ):
            continue
        many = len(items.attributes) > max_attributes  # in all the items
        if many or long_body:
            if raw is None:
                raw = _REQUESTS["raw"].FromString(body).resources
            longest = max(map(len, raw[ri].scopes[si].items), default=0)
            # An item holding more attributes than the limit is longer than this.
            if many and longest >= (max_attributes + 1) * _LEAST_ATTRIBUTE_BYTES:
                continue
            if long_body and longest > max_value_length:
                continue
        cleared.add((ri, si))
    return cleared


def _ids_ok(occurrences: Any, lengths: frozenset[int], zero: bytes | None) -> bool:
    if not occurrences:
        return True
    values = list(occurrences)
    return (zero is None or zero not in values) and lengths.issuperset(map(len, values))
