"""Turn pydantic validation errors into the API's `{"index", "field", "message"}` entries."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError

from flext_observability.models.native import FieldError

_FRIENDLY = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "finite_number": "must be a finite number",
}


@dataclass(frozen=True, slots=True)
class ItemError:
    index: int | None
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _message(error: Any) -> tuple[str | None, str]:
    """(field path from a FieldError, or None; a message that says why)."""
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        return cause.field, cause.message
    kind = error["type"]
    if kind in _FRIENDLY:
        return None, _FRIENDLY[kind]
    if kind == "string_pattern_mismatch":
        return None, f"must match {error['ctx']['pattern']}"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return None, message


def raw_errors(exc: ValidationError) -> list[Any]:
    """pydantic's errors without their inputs and links (which cost more than the rest)."""
    return exc.errors(include_url=False, include_input=False)


def item_errors(exc: ValidationError, batch: bool) -> list[ItemError]:
    """One entry per problem; `index` is the item's position (0 for a single object)."""
    return describe(raw_errors(exc), batch)


def describe(raw: list[Any], batch: bool, index: int = 0) -> list[ItemError]:
    """`item_errors` of errors already taken from the exception; `index` is the position
    of the first item validated (a part of a batch validated on its own)."""
    errors = []
    for error in raw:
        loc = list(error["loc"])
        at = index
        if batch and loc and isinstance(loc[0], int):
            at += loc.pop(0)
        if error["type"].startswith(("dict_", "model_")) and not loc:
            errors.append(ItemError(at, "", "must be a JSON object"))
            continue
        # Drop pydantic's union branch tags ("str", "list[...]", "function-after[...]").
        path = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in _TAGS))]
        field, message = _message(error)
        if field is not None:
            path.append(field)
        errors.append(ItemError(at, ".".join(path), message))
    return errors


_TAGS = frozenset({"str", "bool", "int", "float", "constrained-str", "[key]"})
