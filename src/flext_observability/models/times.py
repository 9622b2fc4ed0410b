"""The one rule for times given to the collector, and the one way it renders them.

A time is accepted as:

- an RFC 3339 string with a zone offset (`2026-11-27T10:00:00Z`, `...+01:00`), from 1970;
- integer Unix nanoseconds from 10^18 (2001-09-09) on;
- Unix seconds, integer or fractional, from 10^9 (2001-09-09) on.

Every form ends before 2^63 nanoseconds (2262-04-11), the range of a signed 64-bit
nanosecond count. A number between the two ranges (10^11 to 10^18: milliseconds,
microseconds, or nanoseconds of 1970) is ambiguous and refused, as is one below 10^9
(seconds of 1970) or past the end: never read silently as 1970 or overflowed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

NANOS = 1_000_000_000
MAX_NANOS = 2**63 - 1
MIN_SECONDS = 1e9
MAX_SECONDS = MAX_NANOS / NANOS
MIN_NANOS = 10**18

ACCEPTED = (
    "an RFC 3339 time with a zone offset (2026-11-27T10:00:00Z), Unix seconds "
    "(1e9 to 9.2e9, integer or fractional) or integer Unix nanoseconds (1e18 to 2^63)"
)


def _refuse(why: str) -> ValueError:
    return ValueError(f"{why}; use {ACCEPTED}")


def _from_text(value: str) -> int:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _refuse(f"'{value[:64]}' is not a time") from None
    if moment.tzinfo is None:
        raise ValueError("an RFC 3339 time needs a time zone offset (e.g. Z)")
    seconds = (moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
    if not 0 <= seconds <= MAX_SECONDS:
        raise _refuse(f"'{value[:64]}' is outside 1970 to 2262")
    nanos = int(moment.timestamp()) * NANOS + moment.microsecond * 1000
    return min(nanos, MAX_NANOS)


def to_unix_nanos(value: Any) -> Any:
    """Any accepted form -> integer Unix nanoseconds; raises ValueError saying what is
    accepted. Other types (null, objects) are left for the field's type check."""
    if isinstance(value, bool):
        raise _refuse("a boolean is not a time")
    if isinstance(value, str):
        return _from_text(value)
    if isinstance(value, int):
        if MIN_NANOS <= value <= MAX_NANOS:
            return value
        if MIN_SECONDS <= value <= MAX_SECONDS:
            return value * NANOS
        if value < 0:
            raise _refuse(f"{value} is before 1970")
        if value > MAX_NANOS:
            raise _refuse(f"{value} is past 2262 in nanoseconds")
        if value < MIN_SECONDS:
            raise _refuse(f"{value} would be in 1970-2001 (seconds or nanoseconds?)")
        raise _refuse(f"{value} is ambiguous (milliseconds or microseconds?)")
    if isinstance(value, float):
        if MIN_SECONDS <= value <= MAX_SECONDS:
            whole = int(value)
            return min(whole * NANOS + round((value - whole) * NANOS), MAX_NANOS)
        raise _refuse(f"{value!r} is not Unix seconds in range (nanoseconds must be integers)")
    return value


def rfc3339(seconds: float | None) -> str | None:
    """Unix seconds -> `2026-11-27T10:00:00.123456Z` (None stays None)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
