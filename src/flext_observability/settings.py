"""The ground floor of every settings model: the strict section base, durations, numbers and
readable files. A component's settings model (its folder's `config.py`) is built from these;
the top-level `config.py` composes the sections."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict

_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$|^\d+(?:\.\d+)?$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0, "": 1.0}


def parse_duration(value: Any) -> Any:
    """`30`, `30s`, `5m`, `1h`, `250ms`, `1m30s`, `1h5m` -> seconds; anything else is left
    for the type check (a boolean is no duration)."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a duration (use seconds or e.g. 30s, 1m30s)")
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if _DURATION.match(text) is None:
            raise ValueError(
                f"'{value}' is not a duration (use seconds or e.g. 30s, 5m, 1h, 1m30s, 250ms)"
            )
        return sum(
            float(number) * _UNIT_SECONDS[unit]
            for number, unit in _DURATION_PART.findall(text)
        )
    return value


# Numbers are numbers: `workers: true` or `max_items: "10"` is refused, not converted.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Port = Annotated[Int, Field(ge=0, le=65535)]


_TOKEN = re.compile(r"^[!-~]{1,4096}$")


def check_token(value: str) -> str:
    """A bearer token. Messages about tokens never show the value."""
    if not _TOKEN.match(value):
        raise ValueError("a token must be 1 to 4096 printable ASCII characters, no spaces")
    return value


Token = Annotated[str, AfterValidator(check_token)]


class Section(BaseModel):
    """A settings section: an unknown key is an error, named with its path."""

    model_config = ConfigDict(extra="forbid")


def _readable_file(path: Path) -> Path:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    return path


ReadableFile = Annotated[Path, AfterValidator(_readable_file)]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{value}' is not a URL like http://host:port (http or https)")
    return value


EndpointUrl = Annotated[str, AfterValidator(_http_url)]


class RetryConfig(Section):
    """A sender's exponential backoff (`retry.Backoff`): an exporter's `retry` section."""

    initial_interval: Duration = 1.0
    max_interval: Duration = 30.0
    multiplier: Float = Field(default=1.5, ge=1.0)
    randomization_factor: Float = Field(default=0.5, ge=0.0, le=1.0)
