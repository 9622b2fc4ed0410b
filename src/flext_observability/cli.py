"""The `flext-observability` command: serve, check-config, send, refusals. The only place
that exits."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from flext_observability.config import ConfigError, load_config
from flext_observability.routes import NATIVE
from flext_observability.signals import Signal

log = logging.getLogger("flext_observability")

DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
SEND_ROUTES = {
    "metric": Signal.METRICS, "span": Signal.SPANS, "alert": Signal.ALERTS, "health": Signal.HEALTH,
}


def _serve(args: argparse.Namespace) -> int:
    from flext_observability.logs import configure_logging

    configure_logging(args.log_format, args.log_level)
    # httpx logs every request at INFO: one line per export is noise, not an event.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"config error: {line}", file=sys.stderr)
        return 2
    if config.server.log_level is not None:
        logging.getLogger().setLevel(config.server.log_level.upper())
    from flext_observability.server import serve

    try:
        started = serve(config, args.log_format, config.server.log_level or args.log_level,
                        args.config)
    except OSError as exc:
        log.error("cannot start: %s", exc.strerror or exc)
        return 1
    return 0 if started else 1


def _check_config(args: argparse.Namespace) -> int:
    try:
        load_config(args.file)
    except ConfigError as exc:
        for line in exc.errors:
            print(line)
        return 2
    print(f"{args.file}: valid")
    return 0


def _parse_value(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


_JSON_FIELDS = frozenset(
    {"value", "buckets", "timestamp", "start_time", "end_time", "ttl_seconds", "starts_at",
     "ends_at", "status", "events"}
)


def build_item(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs; `section.key=value` nests one level (`labels.code=200`).

    A health check is `checks.<name>=<status>`, or its fields one by one
    (`checks.db.status=degraded checks.db.message="slow"`). Numbers, times and objects are
    read as JSON where the field takes them; names, labels and annotations stay strings.
    """
    item: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"'{pair}' is not key=value")
        section, dot, leaf = key.partition(".")
        name, dot2, check_field = leaf.partition(".")
        if section == "checks" and dot2:
            checks = item.setdefault(section, {})
            check = checks.setdefault(name, {})
            if not isinstance(check, dict):
                raise ValueError(f"'{pair}': checks.{name} is already given as a status")
            check[check_field] = _parse_value(value) if check_field == "observed_value" else value
        elif dot:
            parsed = _parse_value(value) if section in ("attributes", "checks") else value
            item.setdefault(section, {})[leaf] = parsed
        else:
            item[key] = _parse_value(value) if key in _JSON_FIELDS else value
    return item


def _send(args: argparse.Namespace) -> int:
    import httpx

    try:
        item = orjson.loads(args.json) if args.json else build_item(args.fields)
    except (ValueError, orjson.JSONDecodeError) as exc:
        print(f"send: {exc}", file=sys.stderr)
        return 2
    headers = {"Content-Type": "application/json"}
    token = args.token or os.environ.get("FLEXT_OBS_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{args.endpoint.rstrip('/')}{NATIVE[SEND_ROUTES[args.kind]].path}"
    try:
        answer = httpx.post(url, content=orjson.dumps(item), headers=headers, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"send: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if answer.status_code == 202:
        print(f"accepted: {answer.json()['accepted']}")
        return 0
    try:
        errors = answer.json().get("errors", [])
    except ValueError:
        errors = []
    print(f"refused: HTTP {answer.status_code}", file=sys.stderr)
    for error in errors:
        where = error.get("field") or "(body)"
        print(f"  {where}: {error.get('message')}", file=sys.stderr)
    return 1


def _refusals(args: argparse.Namespace) -> int:
    import httpx

    headers = {}
    token = args.token or os.environ.get("FLEXT_OBS_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    params = {k: v for k in ("limit", "tenant", "signal", "reason")
              if (v := getattr(args, k)) is not None}
    url = f"{args.endpoint.rstrip('/')}/api/v1/refusals"
    try:
        answer = httpx.get(url, params=params, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"refusals: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if answer.status_code != 200:
        print(f"refusals: HTTP {answer.status_code}: {answer.text.strip()}", file=sys.stderr)
        return 1
    refusals = answer.json()["refusals"]
    if args.json:
        print(orjson.dumps(refusals, option=orjson.OPT_INDENT_2).decode())
        return 0
    for r in refusals:
        print(f"{r['time']} {r['status']} {r['receiver']} {r['signal']} {r['reason']} "
              f"items={r['items']} tenant={r['tenant'] or '-'}")
        for error in r["errors"]:
            index = "" if error["index"] is None else f"[{error['index']}] "
            print(f"  {index}{error['field'] or '(body)'}: {error['message']}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="flext-observability", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the collector in the foreground")
    serve.add_argument("--config", type=Path, help="YAML config file (defaults apply without)")
    serve.add_argument("--log-format", choices=["text", "json"], default="text")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"])
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("file", type=Path)
    check.set_defaults(run=_check_config)

    send = commands.add_parser(
        "send",
        help="post one item to a running collector",
        description="Fields as key=value (labels.k=v, annotations.k=v, attributes.k=v nest), "
        "or the whole item with --json. Example: send metric name=jobs_done type=counter "
        "value=1 service=cron labels.queue=default; send health service=api checks.db=healthy "
        "checks.cache=degraded (status: the worst check when not given). Times: RFC 3339, "
        "Unix seconds or integer Unix nanoseconds.",
    )
    send.add_argument("kind", choices=sorted(SEND_ROUTES))
    send.add_argument("fields", nargs="*", metavar="key=value")
    send.add_argument("--json", help="the item as a JSON object (instead of key=value fields)")
    send.add_argument("--endpoint", default=os.environ.get("FLEXT_OBS_ENDPOINT", DEFAULT_ENDPOINT))
    send.add_argument("--token", help="bearer token (default: $FLEXT_OBS_TOKEN)")
    send.add_argument("--timeout", type=float, default=10.0)
    send.set_defaults(run=_send)

    refusals = commands.add_parser(
        "refusals", help="the most recent refused requests of a running collector, newest first"
    )
    refusals.add_argument("--limit", type=int)
    refusals.add_argument("--tenant")
    refusals.add_argument("--signal", choices=["metrics", "spans", "alerts", "health", "logs"])
    refusals.add_argument("--reason", help="a reason of flext_collector_refused_items_total")
    refusals.add_argument("--json", action="store_true", help="print the refusals as JSON")
    refusals.add_argument("--endpoint",
                          default=os.environ.get("FLEXT_OBS_ENDPOINT", DEFAULT_ENDPOINT))
    refusals.add_argument("--token", help="bearer token (default: $FLEXT_OBS_TOKEN)")
    refusals.add_argument("--timeout", type=float, default=10.0)
    refusals.set_defaults(run=_refusals)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))
