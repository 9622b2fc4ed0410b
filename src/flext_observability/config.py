"""The collector's whole configuration: YAML file, `${ENV}` expansion, `FLEXT_OBS_*` overrides.

`Config` composes the sections each component owns: `server` and `limits`
(`receivers/config.py`), `queue` (`pipeline/config.py`), `exporters` (`exporters/config.py`,
one field per exporter's own model), `health` (`health/config.py`).

Errors are reported with the YAML path of the key (`queue.max_items: ...`), so that
`check-config` and `serve` can say exactly what to fix.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

import orjson
import yaml
from pydantic import BaseModel, ValidationError

from flext_observability.exporters.config import ExportersConfig
from flext_observability.exporters.otlp.config import OtlpSignal
from flext_observability.health.config import HealthConfig
from flext_observability.pipeline.config import QueueConfig
from flext_observability.receivers.config import LimitsConfig, ServerConfig
from flext_observability.settings import Section as _Section

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Config(_Section):
    """Every key may be overridden by `FLEXT_OBS_<SECTION>__<KEY>`; env wins over the file."""

    server: ServerConfig = ServerConfig()
    queue: QueueConfig = QueueConfig()
    exporters: ExportersConfig = ExportersConfig()
    health: HealthConfig = HealthConfig()
    limits: LimitsConfig = LimitsConfig()

    def accepts_spans(self) -> bool:
        """Spans are taken in when an exporter will deliver them, or the queue holds them."""
        return self.exports("traces") or self.queue.hold_unexported

    def exports(self, signal: OtlpSignal) -> bool:
        """Some exporter takes `signal` (traces, metrics or logs) off the queue."""
        if signal == "traces" and self.exporters.jaeger.endpoint is not None:
            return True
        debug = self.exporters.debug
        if debug.enabled and ("spans" if signal == "traces" else signal) in debug.signals:
            return True
        return any(signal in entry.signals for entry in self.exporters.otlp)


log = logging.getLogger(__name__)

ENV_PREFIX = "FLEXT_OBS_"
Path_ = tuple[str | int, ...]

# Keys that moved to another section: old path -> new path. The old key is still read (as
# the new one, with a WARNING naming it); both set to different values is a config error.
MOVED: dict[tuple[str, ...], tuple[str, ...]] = {
    ("server", "max_items_per_request"): ("limits", "max_items_per_request"),
}


class ConfigError(Exception):
    """A config that cannot be used; `errors` holds one line per problem, each naming where
    it came from: `file: yaml.path: message` or `VARIABLE (yaml.path): message`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _dotted(path: Path_) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def expand_env(
    value: Any,
    environ: Mapping[str, str] | None = None,
    refs: dict[Path_, list[str]] | None = None,
    path: Path_ = (),
) -> Any:
    """Replace `${NAME}` and `${NAME:-default}` in every string of a loaded YAML tree.

    `${NAME}` with NAME unset raises ConfigError naming it (and the YAML path); `refs`, when
    given, gets the variables used at each path."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if refs is not None:
                refs.setdefault(path, []).append(name)
            if name in env:
                return env[name]
            if default is None:
                raise ConfigError([
                    f"{_dotted(path)}: ${{{name}}} is not set (set it, or write "
                    f"${{{name}:-default}})"
                ])
            return default

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {k: expand_env(v, env, refs, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, refs, (*path, i)) for i, v in enumerate(value)]
    return value


def _field(path: list[str]) -> Any:
    """The annotation of the config key at `path`, or None when there is no such key."""
    model: Any = Config
    annotation: Any = None
    for name in path:
        fields = getattr(model, "model_fields", None)
        if fields is None or name not in fields:
            return None
        annotation = fields[name].annotation
        model = annotation
    return annotation


def _kind(annotation: Any) -> str:
    """How an environment value is read for a key of this type."""
    for arg in (annotation, *get_args(annotation)):
        origin = get_origin(arg) or arg
        if origin is list:
            return "list"
        if origin is dict or (isinstance(origin, type) and issubclass(origin, BaseModel)):
            return "json"
        if origin in (int, float, bool):
            return "scalar"
    return "text"


def _env_value(name: str, path: list[str], text: str) -> Any:
    kind = _kind(_field(list(MOVED.get(tuple(path), path))))
    if kind == "text":
        return text
    if kind == "scalar":
        try:
            return yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError:
            return text
    if kind == "list" and not text.lstrip().startswith("["):
        return [item.strip() for item in text.split(",") if item.strip()]
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        shape = "a JSON list or comma-separated values" if kind == "list" else "a JSON object"
        raise ConfigError([f"{name} ({'.'.join(path)}): must be {shape}"]) from None


def _from_environment(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[Path_, str]]:
    """`FLEXT_OBS_<SECTION>__<KEY>` values as a tree, and the variable of each path. Names
    of no config section (the SDK's FLEXT_OBS_ENDPOINT...) are not the daemon's."""
    tree: dict[str, Any] = {}
    sources: dict[Path_, str] = {}
    errors: list[str] = []
    for name, text in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        if path[0] not in Config.model_fields or "" in path:
            continue
        try:
            value = _env_value(name, path, text)
        except ConfigError as exc:
            errors += exc.errors
            continue
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[-1]] = value
            sources[tuple(path)] = name
    if errors:
        raise ConfigError(errors)
    return tree, sources


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    message: str = error["msg"]
    return message.removeprefix("Value error, ")


def _format_errors(
    exc: ValidationError,
    file: Path | None,
    env: dict[Path_, str],
    refs: dict[Path_, list[str]],
    environ: Mapping[str, str],
    renamed: dict[Path_, Path_],
) -> list[str]:
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        where, message = _dotted(loc), _message(error)
        for new, old in renamed.items():
            if loc[: len(new)] == new:
                where = f"{_dotted(old + loc[len(new):])} (now {where})"
        variables = [v for p, v in env.items() if p == loc[: len(p)]] or [
            v for p, v in env.items() if p[: len(loc)] == loc
        ]
        if variables:
            lines.append(f"{', '.join(variables)} ({where}): {message}")
            continue
        used = [
            n for p, names in refs.items()
            if p[: len(loc)] == loc or loc[: len(p)] == p
            for n in names
        ]
        if used:
            empty = [n for n in used if not environ.get(n)]
            message += f" (from ${{{used[0]}}}{', which is empty' if empty else ''})"
        lines.append(f"{file}: {where}: {message}" if file is not None else f"{where}: {message}")
    return lines


def _variable(path: Path_) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in path)


def _migrate(
    tree: dict[str, Any], file: Path | None, env: dict[Path_, str], refs: dict[Path_, list[str]]
) -> dict[Path_, Path_]:
    """Put the value of each moved key that is set (`MOVED`) at its new path, in `tree`, and
    its variable and `${ENV}` references with it; log a WARNING naming the new key. Returns
    new path -> old path of the keys moved; raises ConfigError naming both keys when both
    are set to different values."""
    renamed: dict[Path_, Path_] = {}
    errors = []
    for old, new in MOVED.items():
        old_parent, new_parent = _section(tree, old[:-1]), _section(tree, new[:-1])
        if old_parent is None or old[-1] not in old_parent:
            continue
        value = old_parent.pop(old[-1])

        def where(path: Path_) -> str:
            if path in env:
                return f"{env[path]} ({_dotted(path)})"
            return f"{file}: {_dotted(path)}" if file is not None else _dotted(path)

        if new_parent is not None and new[-1] in new_parent and new_parent[new[-1]] != value:
            errors.append(
                f"{where(old)} and {where(new)} are both set, to different values: "
                f"{_dotted(old)} is now {_dotted(new)}; set that one only"
            )
            continue
        if new_parent is None:
            above = _section(tree, new[:-2])
            if above is None or above.get(new[-2]) is not None:
                # The new key's section is there but no mapping: its own error says so.
                old_parent[old[-1]] = value
                continue
            new_parent = above[new[-2]] = {}
        new_parent[new[-1]] = value
        written = where(old)
        if old in env:
            env[new] = env.pop(old)
        for path in [p for p in refs if p[: len(old)] == old]:
            refs[new + path[len(old):]] = refs.pop(path)
        renamed[new] = old
        log.warning("config: %s is deprecated, read as %s (%s): rename it", written,
                    _dotted(new), _variable(new))
    if errors:
        raise ConfigError(errors)
    return renamed


def _section(tree: dict[str, Any], path: Path_) -> dict[str, Any] | None:
    """The mapping at `path` in `tree`, or None when there is none."""
    node: Any = tree
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the config from an optional YAML file plus the environment; raise ConfigError
    with every problem, each naming its source (the file and YAML path, or the variable)."""
    env = os.environ if environ is None else environ
    data: Any = {}
    refs: dict[Path_, list[str]] = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
        except yaml.YAMLError as exc:
            raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
        if not isinstance(data, dict):
            raise ConfigError([f"{path}: (top level): must be a mapping of sections"])
        try:
            data = expand_env(data, env, refs)
        except ConfigError as exc:
            raise ConfigError([f"{path}: {line}" for line in exc.errors]) from None
    overrides, sources = _from_environment(env)
    tree = _merge(data, overrides)
    renamed = _migrate(tree, path, sources, refs)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path, sources, refs, env, renamed)) from None
