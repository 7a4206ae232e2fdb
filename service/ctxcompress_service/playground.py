"""``GET /playground``: a page to paste documents and a question, pick a method and budget, and see what was kept
(highlighted) and dropped (struck through) per document, with ranks, tokens and the cost saved.

One static HTML file shipped in the package (no build step, no CDN); it calls ``/v1/methods`` and
``/v1/compress`` with ``include_spans`` from the browser. ``?example&autorun&method=...&rate=...`` loads a sample
and runs it (used by the browser test and for the screenshot in ``docs/``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

__all__ = ["install_playground"]

PAGE = Path(__file__).with_name("static") / "playground.html"


@cache
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


def install_playground(app: FastAPI) -> None:
    @app.get("/playground", include_in_schema=False)
    async def playground() -> HTMLResponse:
        return HTMLResponse(_page())
