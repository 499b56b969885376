"""The API's documentation pages work offline: /docs (Swagger UI) and /redoc load every script, style sheet
and icon from the API itself, never from a CDN or Google Fonts, and need no token (like openapi.json)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlsys_assets.api.app import ApiSettings, create_app

# What a page refers to: <script src>, <link href>, Swagger UI's `url: '…'` and ReDoc's spec-url.
REFERENCE = re.compile(r"""(?:src|href|spec-url)="([^"]*)"|\burl: '([^']*)'""")
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
REMOTE = ("cdn.jsdelivr", "fonts.googleapis", "fonts.gstatic", "unpkg.com", "cdn.redoc.ly")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    # No lifespan: the pages need no served model, and the test does not start the reload thread.
    serving = tmp_path_factory.mktemp("api") / "serving"
    return TestClient(create_app(ApiSettings(serving_root=serving, token="docs-test-token")))


def references(html: str) -> list[str]:
    return [src or url for src, url in REFERENCE.findall(html)]


@pytest.mark.parametrize("page, expected", [
    ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png", "openapi.json"}),
    ("/redoc", {"redoc.standalone.js", "favicon.png", "openapi.json"}),
])
def test_docs_page_refers_only_to_the_api_itself(client: TestClient, page: str, expected: set[str]):
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.search(r"https?:|//[\w.-]+\.\w", html), "an absolute or protocol-relative URL in the page"
    assert not [host for host in REMOTE if host in html]
    found = references(html)
    assert {Path(url).name for url in found} == expected
    assert all(url.startswith("/") for url in found)
    # Should a bundle still reach out, the browser refuses: only this server, inline code and data: images.
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "img-src 'self' data:;" in policy


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_everything_a_docs_page_refers_to_is_served_without_a_token(client: TestClient, page: str):
    for url in references(client.get(page).text):
        response = client.get(url)
        assert response.status_code == 200, url
        assert CONTENT_TYPES[Path(url).suffix] in response.headers["content-type"], url
        assert response.content, url
        if url.endswith((".js", ".css")):
            # The bundles themselves must not pull fonts or scripts from the internet either.
            assert not [host for host in REMOTE if host in response.text], url


def test_docs_pages_leave_the_prediction_routes_protected(client: TestClient):
    assert client.get("/v1/models").status_code == 401
    assert client.get("/openapi.json").status_code == 200
