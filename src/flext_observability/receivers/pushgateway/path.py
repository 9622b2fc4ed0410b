"""The grouping key of a push URL, as the Pushgateway reads it (its `splitLabels`)."""

from __future__ import annotations

import base64
import binascii
import re

PREFIX = "/metrics/job"
BASE64_SUFFIX = "@base64"
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

GroupKey = tuple[tuple[str, str], ...]


class BadPath(ValueError):
    """The URL names no valid group (answered 400 with this message)."""


def decode_base64(value: str) -> str:
    """URL-safe base64 with optional `=` padding; `=` alone is the empty string."""
    text = value.rstrip("=")
    try:
        raw = base64.b64decode(
            text + "=" * (-len(text) % 4), altchars=b"-_", validate=True
        )
        return raw.decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise BadPath(f"invalid base64 encoding {value!r}: {exc}") from None


def grouping_key(path: str) -> dict[str, str]:
    """The labels of the group that `path` (`/metrics/job[@base64]/<job>{/<label>/<value>}`,
    percent-decoded) names, `job` included."""
    rest = path[len(PREFIX):]
    encoded = rest.startswith(BASE64_SUFFIX)
    if encoded:
        rest = rest[len(BASE64_SUFFIX):]
    if not rest.startswith("/"):
        raise BadPath(f"not a push path: {path!r}")
    job, _, labels = rest[1:].partition("/")
    if encoded:
        try:
            job = decode_base64(job)
        except BadPath as exc:
            raise BadPath(f"invalid base64 encoding in job name {job!r}: {exc}") from None
    if not job:
        raise BadPath("job name is required")
    result = _split_labels("/" + labels if labels else "")
    result["job"] = job
    return result


def _split_labels(labels: str) -> dict[str, str]:
    result: dict[str, str] = {}
    if len(labels) <= 1:
        return result
    components = labels.split("/")
    if len(components) % 2 == 0:
        raise BadPath(f"odd number of components in label string {labels!r}")
    for i in range(1, len(components) - 1, 2):
        name, value = components[i], components[i + 1]
        trimmed = name.removesuffix(BASE64_SUFFIX)
        if not _LABEL_NAME.match(trimmed) or trimmed.startswith("__"):
            raise BadPath(f"improper label name {trimmed!r}")
        if name == trimmed:
            result[name] = value
            continue
        try:
            result[trimmed] = decode_base64(value)
        except BadPath:
            raise BadPath(
                f"invalid base64 encoding for label {trimmed}={value!r}"
            ) from None
    return result
