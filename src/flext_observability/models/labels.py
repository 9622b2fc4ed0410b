"""Prometheus label names of attribute keys and native label names, per the OpenTelemetry
"Prometheus and OpenMetrics Compatibility" specification. Here, not with the exporter's
naming, because the models' rules use it and the SDK loads the models.
"""

from __future__ import annotations

import re
from functools import lru_cache

_NOT_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9]+")


@lru_cache(maxsize=8192)
def label_name(key: str) -> str:
    """A Prometheus label name for an attribute key.

    Runs of characters other than ASCII letters and digits (`_` included) become one `_`,
    so no result starts with the `__` Prometheus reserves; a leading digit gets `key_`; a
    leading `_` is kept, as the OpenTelemetry Collector keeps it; an empty key is `key`.
    """
    name = _NOT_LABEL_CHARS.sub("_", key)
    if name[:1].isdigit():
        return f"key_{name}"
    return name or "key"
