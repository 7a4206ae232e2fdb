"""``GET /docs``: Swagger UI for the OpenAPI spec, served offline.

FastAPI's own page loads Swagger UI's script and stylesheet from a CDN, so it is blank where the service runs
without internet access. The same files ship in the ``swagger-ui-bundle`` package; they are served from it under
``/docs/assets``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["install_docs"]

ASSETS = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Add ``/docs`` (Swagger UI) and its assets to ``app``."""
    import swagger_ui_bundle

    app.mount(ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
