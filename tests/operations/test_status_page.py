"""The status page (`GET /`) against the real daemon, rendered by Debian's headless
Chromium: it shows the queue, the exporters (one failing), a refusal made just before,
the services' health and the firing alerts, with no console error; a screenshot is kept
in the test's tmp dir."""

import re

import httpx
import orjson
import pytest

from helpers.chromium import CHROMIUM, Browser
from helpers.procs import Daemon, free_port, poll

integration = pytest.mark.integration

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not "
                                    "installed (make system-deps)")
NOW_NS = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    browser = Browser(tmp_path_factory.mktemp("chromium"))
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    dead = f"http://127.0.0.1:{free_port()}"
    daemon = Daemon(tmp_path_factory.mktemp("status"), config_overrides={"exporters": {
        "jaeger": {"endpoint": dead, "protocol": "http/protobuf",
                   "retry": {"initial_interval": 0.1, "max_interval": 0.2}},
    }})
    daemon.start()
    yield daemon
    daemon.stop()


def post(daemon, kind, item):
    return httpx.post(f"{daemon.url}/api/v1/{kind}", content=orjson.dumps(item),
                      headers={"Content-Type": "application/json"}, timeout=10)


@pytest.fixture(scope="module")
def busy(daemon):
    """A span the (unreachable) Jaeger exporter keeps failing on, a health report, an
    alert, and last a refused metric."""
    span = {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
            "name": "checkout", "service": "shop", "start_time": NOW_NS,
            "end_time": NOW_NS + 1000}
    assert post(daemon, "spans", span).status_code == 202
    assert post(daemon, "health", {"service": "billing-api", "status": "unhealthy",
                                   "ttl_seconds": 600}).status_code == 202
    assert post(daemon, "alerts", {"name": "DiskAlmostFull", "severity": "warning",
                                   "service": "storage", "status": "firing",
                                   "summary": "disk 93% full"}).status_code == 202
    poll(lambda: httpx.get(f"{daemon.url}/readyz").json()["exporters"]["jaeger"],
         lambda state: state["last_error"] is not None, 20, 0.1, "jaeger export failing")
    answer = post(daemon, "metrics", {"name": "orders_total", "type": "counter",
                                      "value": -3, "service": "shop"})
    assert answer.status_code == 422
    return daemon


@integration
def test_the_page_is_one_html_document_without_script_nor_external_asset(busy):
    answer = httpx.get(f"{busy.url}/", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert '<meta http-equiv="refresh"' in page
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert '<link rel=icon href="data:,">' in page  # no /favicon.ico request


@integration
@needs_chromium
def test_chromium_renders_queue_exporters_refusal_health_and_alerts(busy, browser, tmp_path):
    loaded = browser.load(f"{busy.url}/")
    assert loaded.errors == []
    text = re.sub(r"<[^>]+>", " ", loaded.dom)
    text = re.sub(r"\s+", " ", text)
    for heading in ("Receivers", "Queue", "Exporters", "Recent refusals", "Services' health",
                    "Firing alerts"):
        assert heading in text
    assert re.search(r"spans 1 \d+ ", text), text  # the span waiting for Jaeger
    assert re.search(r"jaeger exporter down", text), text
    assert "connect" in text.lower()  # the last error says why
    assert re.search(r"native metrics 422 invalid 1 \[0\] value:", text), text
    assert "billing-api" in text
    assert "unhealthy" in text
    assert "DiskAlmostFull" in text
    assert "disk 93% full" in text
    shot = tmp_path / "status.png"
    browser.screenshot(shot)
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@integration
@needs_chromium
def test_the_console_check_sees_errors(browser, tmp_path):
    """The check above can fail: a page that logs an error and loads a missing image."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><img src="missing.png">'
                    '<script>console.error("broken on purpose")</script>')
    errors = browser.load(page.as_uri()).errors
    assert any("broken on purpose" in e for e in errors), errors
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in errors), errors
