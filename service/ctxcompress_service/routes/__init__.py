"""HTTP routes, one module per surface; each route only fetches state, calls the engine or a handler, returns."""

from __future__ import annotations

from ctxcompress_service.routes import chat, compress, info

__all__ = ["chat", "compress", "info"]
