"""`FlextResult[T]`: a small railway result, a value or an error message, never both.

Operations that can fail on bad input return one instead of raising, so that a caller
can chain them (`map`, `flat_map`) and look at the outcome once, at the end. The API is
flext-core's: `FlextResult[T].ok(value)` / `.fail(error)` (on the class or the subscripted
class), `is_success`, `is_failure`, `value`, `error`, `unwrap`, `unwrap_or`, `map`,
`flat_map` (also `bind`), `map_error` (also `alt`) and `tap`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")


class UnwrapError(RuntimeError):
    """`unwrap()` was called on a failure; the message is the failure's error."""


@dataclass(frozen=True, slots=True)
class FlextResult(Generic[T]):
    """Build with `FlextResult.ok(value)` or `FlextResult.fail(error)`.

    A success holds `value` (which may be None); a failure holds `error`, a message that
    names the field at fault (`"value: must be a finite number"`).
    """

    _value: T | None = None
    _error: str | None = None

    @classmethod
    def ok(cls, value: T) -> FlextResult[T]:
        return cls(value, None)

    @classmethod
    def fail(cls, error: str) -> FlextResult[T]:
        return cls(None, str(error))

    @property
    def is_success(self) -> bool:
        return self._error is None

    @property
    def is_failure(self) -> bool:
        return self._error is not None

    @property
    def value(self) -> T | None:
        """The value of a success; None for a failure (use `unwrap()` to insist)."""
        return self._value

    @property
    def error(self) -> str | None:
        """The error of a failure; None for a success."""
        return self._error

    def unwrap(self) -> T:
        """The value; raises `UnwrapError` with the error message for a failure."""
        if self._error is not None:
            raise UnwrapError(self._error)
        return self._value  # type: ignore[return-value]

    def unwrap_or(self, default: T) -> T:
        """The value of a success, `default` for a failure."""
        if self._error is not None:
            return default
        return self._value  # type: ignore[return-value]

    def map(self, func: Callable[[T], U]) -> FlextResult[U]:
        """`ok(func(value))` for a success; the same failure otherwise."""
        if self._error is not None:
            return FlextResult(None, self._error)
        return FlextResult(func(self._value), None)  # type: ignore[arg-type]

    def flat_map(self, func: Callable[[T], FlextResult[U]]) -> FlextResult[U]:
        """`func(value)` (itself a result) for a success; the same failure otherwise."""
        if self._error is not None:
            return FlextResult(None, self._error)
        return func(self._value)  # type: ignore[arg-type]

    bind = flat_map

    def map_error(self, func: Callable[[str], str]) -> FlextResult[T]:
        """A failure with `func(error)` as its error; a success unchanged."""
        if self._error is None:
            return self
        return FlextResult(None, str(func(self._error)))

    alt = map_error

    def tap(self, func: Callable[[T], object]) -> FlextResult[T]:
        """Call `func(value)` for a success (for its side effect); returns this result."""
        if self._error is None:
            func(self._value)  # type: ignore[arg-type]
        return self
