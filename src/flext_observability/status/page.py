"""`GET /`: one HTML page, no script and no external asset, that reloads itself every
REFRESH_SECONDS (`<meta http-equiv=refresh>`): the receivers' request and item rates, the
queue per signal, every exporter's state, the recent refusals, the services' health and
the firing alerts."""

from __future__ import annotations

import time
from collections import deque
from html import escape
from typing import TYPE_CHECKING, Any

from flext_observability.models.times import rfc3339
from flext_observability.signals import Signal
from flext_observability.telemetry import Counts, SelfTelemetry

if TYPE_CHECKING:
    from flext_observability.collector import Collector

REFRESH_SECONDS = 5
# Rates are taken over the samples of this window (one sample per page view, one at start).
RATE_WINDOW = 60.0
# At most one sample kept per this many seconds (many viewers add no more).
SAMPLE_SPACING = 1.0
RECENT_REFUSALS = 20
NONE = "-"
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d2330;background:#f7f8fa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff;min-width:40em}
th,td{border:1px solid #d5d9e0;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef1f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#176c2f}.down,.unhealthy,.critical{color:#b3261e;font-weight:600}
.degraded,.stale,.warning{color:#9a6700}.muted{color:#6b7280}
.bar{display:inline-block;height:.7em;background:#3b82f6;vertical-align:middle}
"""


class Rates:
    """Per-second rates of counters between a sample taken at most RATE_WINDOW ago and
    now; a sample is kept at start and at page views, SAMPLE_SPACING apart at least."""

    def __init__(self, telemetry: SelfTelemetry) -> None:
        self._telemetry = telemetry
        self._samples: deque[tuple[float, Counts]] = deque()
        self.sample()

    def sample(self) -> tuple[Counts, Counts, float]:
        """(counts now, counts at the oldest sample in the window, seconds between)."""
        now = time.monotonic()
        counts = self._telemetry.counts()
        while len(self._samples) > 1 and now - self._samples[1][0] >= RATE_WINDOW:
            self._samples.popleft()
        then, old = self._samples[0] if self._samples else (now, counts)
        if not self._samples or now - self._samples[-1][0] >= SAMPLE_SPACING:
            self._samples.append((now, counts))
        return counts, old, now - then


def _sum(counts: Counts, name: str, **match: str) -> float:
    return sum(
        value for (family, labels), value in counts.items()
        if family == name and all((k, v) in labels for k, v in match.items())
    )


def _rate(now: Counts, old: Counts, seconds: float, name: str, **match: str) -> str:
    if seconds < 1.0:
        return NONE
    return f"{(_sum(now, name, **match) - _sum(old, name, **match)) / seconds:.1f}"


def _when(seconds: float | None) -> str:
    return "never" if seconds is None else rfc3339(seconds) or "never"


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    """`rows` hold HTML already escaped; an empty table says `empty`."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(text: Any, css: str = "") -> str:
    attr = f' class="{escape(css)}"' if css else ""
    return f"<td{attr}>{escape(str(text))}</td>"


def _num(value: Any) -> str:
    return _td(value, "n")


def _receivers(now: Counts, old: Counts, seconds: float) -> str:
    keys = sorted({
        (dict(labels)["receiver"], dict(labels)["signal"])
        for (family, labels) in now
        if family in ("flext_collector_received_items", "flext_collector_http_requests")
    })
    rows = [[
        _td(receiver), _td(signal),
        _num(_rate(now, old, seconds, "flext_collector_http_requests",
                   receiver=receiver, signal=signal)),
        _num(_rate(now, old, seconds, "flext_collector_received_items",
                   receiver=receiver, signal=signal)),
        _num(int(_sum(now, "flext_collector_received_items", receiver=receiver, signal=signal))),
    ] for receiver, signal in keys]
    return _table(["receiver", "signal", "requests/s", "items accepted/s", "items accepted"],
                  rows, "Nothing received yet.")


def _queue(collector: Collector, now: Counts, old: Counts, seconds: float) -> str:
    queue = collector.queue
    rows = []
    for signal in Signal:
        items, size = queue.depth(signal), queue.depth_bytes(signal)
        share = max(items / queue.signal_max_items, size / queue.signal_max_bytes)
        bar = f'<span class="bar" style="width:{min(100, round(share * 100))}px"></span>'
        rows.append([
            _td(signal.value), _num(items), _num(size),
            f'<td class="n">{bar} {share:.1%}</td>',
            _num(_rate(now, old, seconds, "flext_collector_refused_items", signal=signal.value)),
        ])
    rows.append([
        "<th>all</th>", _num(queue.total_items), _num(queue.total_bytes),
        _td(f"of {queue.max_items} items, {queue.max_bytes} bytes", "n"), _td(""),
    ])
    return _table(["signal", "items", "bytes", "share used", "items refused/s"], rows, "")


def _lag(collector: Collector, name: str) -> str:
    """Items of the consumer's signals still in the queue."""
    try:
        signals = collector.queue.signals_of(name)
    except KeyError:
        return NONE
    return str(sum(collector.queue.depth(signal) for signal in signals))


def _exporters(collector: Collector) -> str:
    rows = [[_td(c.name), _td("consumer"), _td(c.state(), "up" if c.state() == "running"
                                                else "down"),
             _num(_lag(collector, c.name)), _td(NONE), _td(NONE)] for c in collector.consumers]
    for name, exporter in collector.exporters.items():
        answer = exporter.state()
        state: dict[str, Any] = {"state": answer} if isinstance(answer, str) else answer
        targets = state.items() if "state" not in state else [(None, state)]
        for target, delivery in targets:
            label = name if target is None else f"{name} {target}"
            error = delivery.get("last_error")
            error_text = "none" if error is None else (
                f"{error} (at {_when(delivery.get('last_error_at'))})")
            rows.append([
                _td(label), _td("exporter"), _td(delivery["state"], delivery["state"]),
                _num(_lag(collector, name)), _td(_when(delivery.get("last_success_at"))),
                _td(error_text, "" if error is None else "down"),
            ])
    return _table(["name", "kind", "state", "lag (items queued)", "last success", "last error"],
                  rows, "No exporter.")


def _refusals(collector: Collector) -> str:
    rows = []
    for refusal in collector.telemetry.refusals.recent(RECENT_REFUSALS):
        errors = "; ".join(
            ("" if e["index"] is None else f"[{e['index']}] ")
            + (f"{e['field']}: " if e["field"] else "") + str(e["message"])
            for e in refusal.errors
        )
        rows.append([_td(rfc3339(refusal.time)), _td(refusal.tenant or NONE),
                     _td(refusal.receiver), _td(refusal.signal), _num(refusal.status),
                     _td(refusal.reason), _num(refusal.items), _td(errors)])
    return _table(["time", "tenant", "receiver", "signal", "status", "reason", "items",
                   "first errors"], rows, "No refused request.")


def _health(collector: Collector) -> str:
    rows = [[
        _td(s["service"]), _td(s["instance"] or NONE), _td(s["status"], s["status"]),
        _td(_when(s["last_report"])), _td(s.get("tenant", NONE)),
    ] for s in sorted(collector.health.snapshot(), key=lambda s: (s["service"], s["instance"]))]
    return _table(["service", "instance", "status", "last report", "tenant"], rows,
                  "No service has reported its health.")


def _alerts(collector: Collector) -> str:
    rows = []
    for alert in collector.alerts.snapshot():
        labels = alert["labels"]
        severity = labels.get("severity", "")
        rows.append([
            _td(labels.get("alertname", "")), _td(severity, severity),
            _td(labels.get("service", NONE)), _td(_when(alert["starts_at"])),
            _td(alert["annotations"].get("summary", "")),
        ])
    return _table(["alert", "severity", "service", "since", "summary"], rows,
                  "No alert is firing.")


def render(collector: Collector, rates: Rates) -> str:
    """The page, from the collector's state now."""
    now, old, seconds = rates.sample()
    ready, _ = collector.readiness()
    generated = rfc3339(time.time())
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No icon to fetch: a browser would ask for /favicon.ico, a 404 in its console.
        '<link rel=icon href="data:,">'
        f"<title>flext-observability status</title><style>{_STYLE}</style></head><body>"
        "<h1>flext-observability</h1>"
        f'<p>{"<span class=up>ready</span>" if ready else "<span class=down>not ready</span>"}'
        f' · generated {escape(generated or "")} · rates over the last {seconds:.0f}s'
        f" · refreshes every {REFRESH_SECONDS}s</p>"
        f"<section id=receivers><h2>Receivers</h2>{_receivers(now, old, seconds)}</section>"
        f"<section id=queue><h2>Queue</h2>{_queue(collector, now, old, seconds)}</section>"
        f"<section id=exporters><h2>Exporters</h2>{_exporters(collector)}</section>"
        f"<section id=refusals><h2>Recent refusals</h2>{_refusals(collector)}</section>"
        f"<section id=health><h2>Services' health</h2>{_health(collector)}</section>"
        f"<section id=alerts><h2>Firing alerts</h2>{_alerts(collector)}</section>"
        "</body></html>"
    )
