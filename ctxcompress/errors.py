"""Errors raised by ctxcompress; each maps to exactly one HTTP status in the service.

Hierarchy::

    CtxCompressError
    ├── InvalidInput          bad request content (empty documents, unknown method/option, budget too small)  → 422
    │   └── PayloadTooLarge   input exceeds a configured size limit                                          → 413
    ├── UnknownModel          a model name that is not configured                                             → 422
    ├── ModelError            a configured model failed to load or run                                        → 500
    │   └── ModelNotPrepared  a configured embedded model the operator has not prepared (converted) yet        → 503
    ├── Overloaded            the engine's queue is full; retry later                                         → 429
    │   └── EngineUnavailable the engine is starting, stopped or shutting down                                → 503
    ├── CompressionTimeout    the request did not finish within its deadline                                  → 504
    ├── Unauthorized          no API key given (service)                                                      → 401
    │   └── Forbidden         the API key is not valid                                                        → 403
    ├── UpstreamNotConfigured the chat proxy has no upstream URL                                              → 503
    └── UpstreamError         the upstream LLM server could not be reached                                    → 502

One tree for the library, the engine, the service and the REST client (which rebuilds the class from the error
body's ``type``); it imports nothing, so thin fronts use it without the ML stack.
"""

from __future__ import annotations

__all__ = [
    "CtxCompressError",
    "InvalidInput",
    "PayloadTooLarge",
    "UnknownModel",
    "ModelError",
    "ModelNotPrepared",
    "Overloaded",
    "EngineUnavailable",
    "CompressionTimeout",
    "Unauthorized",
    "Forbidden",
    "UpstreamNotConfigured",
    "UpstreamError",
]


class CtxCompressError(Exception):
    """Base class. ``field`` names the request field at fault, when there is one."""

    http_status: int = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(CtxCompressError):
    http_status = 422


class PayloadTooLarge(InvalidInput):
    http_status = 413


class UnknownModel(CtxCompressError):
    http_status = 422

    def __init__(self, name: str, *, known: list[str], field: str | None = None) -> None:
        super().__init__(f"unknown model {name!r}; configured models: {', '.join(sorted(known))}", field=field)
        self.name = name
        self.known = known


class ModelError(CtxCompressError):
    http_status = 500


class ModelNotPrepared(ModelError):
    http_status = 503

    def __init__(self, name: str, *, field: str | None = None) -> None:
        super().__init__(
            f"model {name!r} is configured but not prepared on this server; "
            f"the operator should run `ctxcompress models prepare {name}` (once) and restart",
            field=field,
        )
        self.name = name


class Overloaded(CtxCompressError):
    http_status = 429

    def __init__(self, message: str = "server overloaded", *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CompressionTimeout(CtxCompressError):
    http_status = 504


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
