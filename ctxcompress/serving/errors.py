"""Errors raised by the serving layer (engine front, REST service, client), on top of :mod:`ctxcompress.errors`.

Hierarchy::

    CtxCompressError
    ├── Overloaded                  (ctxcompress.errors)                                   → 429
    │   └── EngineUnavailable       the engine is starting, stopped or shutting down       → 503
    ├── Unauthorized                no API key given                                       → 401
    │   └── Forbidden               the API key is not valid                               → 403
    ├── UpstreamNotConfigured       the proxy has no upstream URL                          → 503
    └── UpstreamError               the upstream LLM server could not be reached           → 502
"""

from __future__ import annotations

from ctxcompress.errors import CtxCompressError, Overloaded

__all__ = ["EngineUnavailable", "Forbidden", "Unauthorized", "UpstreamError", "UpstreamNotConfigured"]


class EngineUnavailable(Overloaded):
    http_status = 503


class Unauthorized(CtxCompressError):
    http_status = 401


class Forbidden(Unauthorized):
    http_status = 403


class UpstreamNotConfigured(CtxCompressError):
    http_status = 503


class UpstreamError(CtxCompressError):
    http_status = 502
