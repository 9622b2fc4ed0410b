"""/docs and /redoc work on a network with no internet: no external URL in the pages, every
asset they reference served by the daemon; /openapi.json documents every route."""

import re
from urllib.parse import urljoin

import httpx
import pytest

EXTERNAL = re.compile(r"(?:[a-z]+:)?//[\w-]+(?:\.[\w-]+)+")
REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


@pytest.mark.parametrize("workers", [0, 1], ids=["one-process", "1-worker"])
def test_docs_pages_reference_only_assets_the_daemon_serves(daemon_factory, workers):
    daemon = daemon_factory({"server": {"workers": workers}})
    for page in ("/docs", "/redoc"):
        answer = httpx.get(f"{daemon.url}{page}", timeout=10)
        assert answer.status_code == 200
        html = answer.text
        assert not EXTERNAL.search(html), EXTERNAL.search(html)
        references = [a or b for a, b in REFERENCE.findall(html)]
        assert any(ref.endswith(".js") for ref in references), references
        for reference in references:
            assert reference.startswith("/"), reference
            asset = httpx.get(urljoin(f"{daemon.url}{page}", reference), timeout=30)
            assert asset.status_code == 200, reference
            assert asset.content, reference


def test_openapi_documents_every_route(daemon_factory):
    daemon = daemon_factory()
    paths = httpx.get(f"{daemon.url}/openapi.json", timeout=10).json()["paths"]
    for path, method in [("/api/v1/metrics", "post"), ("/api/v1/spans", "post"),
                         ("/api/v1/alerts", "post"), ("/api/v1/alerts", "get"),
                         ("/api/v1/health", "post"), ("/api/v1/health", "get"),
                         ("/v1/traces", "post"), ("/v1/metrics", "post"), ("/v1/logs", "post"),
                         ("/metrics", "get"), ("/healthz", "get"), ("/healthz", "head"),
                         ("/readyz", "get"), ("/readyz", "head"),
                         ("/api/v1/refusals", "get"), ("/", "get"), ("/-/reload", "post")]:
        assert method in paths.get(path, {}), (path, method)
    traces = paths["/v1/traces"]["post"]
    assert "application/x-protobuf" in traces["requestBody"]["content"]
