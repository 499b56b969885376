"""The API's documentation: /docs (Swagger UI) and /redoc served from local files, and the OpenAPI schema's
statement of the batch limit (a setting, so not a constant of the request models)."""

from __future__ import annotations

import functools
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

# The Swagger UI and ReDoc bundles that the fastapi-offline package ships (FastAPI's defaults load them from
# cdn.jsdelivr.net and Google Fonts: blank pages without internet).
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS_URL = "/docs-assets"
# ReDoc's sidebar shows Redocly's logo from this URL, with no option to turn it off. An empty data: image
# instead fails to decode at once, and ReDoc then drops the <img>: no request leaves the machine.
REDOCLY_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
# The pages may load only from this server (plus their inline script and styles, data: images and ReDoc's
# blob: worker): should a newer bundle reach out again, the browser refuses.
DOCS_CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                "style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:")
# The request lists bounded by MLSYS_API_BATCH_LIMIT: (schema, property).
BATCH_LISTS = (("BatchRequest", "customer_ids"), ("FeatureBatchRequest", "rows"))


@functools.cache
def _redoc_bundle() -> bytes:
    return (DOCS_ASSETS / "redoc.standalone.js").read_bytes().replace(REDOCLY_LOGO, b"data:,")


def serve_docs_offline(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from local files. Like openapi.json, the pages and their assets need no
    token: they describe the API and answer nothing."""

    @app.get(f"{DOCS_ASSETS_URL}/redoc.standalone.js", include_in_schema=False)
    async def redoc_bundle() -> Response:  # before the mount, which would serve the file unchanged
        return Response(_redoc_bundle(), media_type="text/javascript")

    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    def offline(page: HTMLResponse) -> HTMLResponse:
        page.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return page

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return offline(get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css", swagger_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png"))

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return offline(get_redoc_html(
            openapi_url=app.openapi_url, title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS_URL}/redoc.standalone.js", redoc_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False))


def document_batch_limit(app: FastAPI, limit: int) -> None:
    """The batch limit is a setting, not a constant of the model: put it in the OpenAPI schema (maxItems) so
    clients and schema-driven testers know that more ids or rows than this is a 413."""
    described = app.openapi

    def openapi_with_the_batch_limit() -> dict:
        schema = described()
        for name, field in BATCH_LISTS:
            schema["components"]["schemas"][name]["properties"][field]["maxItems"] = limit
        return schema

    app.openapi = openapi_with_the_batch_limit
