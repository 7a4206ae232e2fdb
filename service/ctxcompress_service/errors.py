"""Exception → HTTP response, in one place.

Every library/service error class carries its status (``http_status``): 422 invalid input (naming the field),
413 too large, 401 missing / 403 bad API key, 429 overloaded and 503 unavailable (both with ``Retry-After``),
502 upstream failure, 504 timeout, 499 client gone (nobody reads it; it shows in metrics and logs).
Request-parsing errors become 422 with the field's dotted path; so does a body the JSON parser gives up on
(FastAPI's 400: not UTF-8, nested too deep, a number too long; the message says which); a non-JSON content type
is 415; a 401 carries ``WWW-Authenticate: Bearer``; a stalled body is 408. Anything else is a server bug: 500,
logged, with no internals in the body. Error text is made UTF-8-safe (lone surrogates escaped) so that an error
about bad text can always be sent.
"""

from __future__ import annotations

import logging
import math
import sys

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ctxcompress.errors import CtxCompressError, Forbidden, Overloaded, Unauthorized
from ctxcompress_service.anthropic_proxy import ANTHROPIC_PATH, anthropic_error
from ctxcompress_service.protocol import ErrorDetail, ErrorResponse

__all__ = ["error_detail", "error_response", "install_error_handlers", "ERROR_RESPONSES"]

logger = logging.getLogger("ctxcompress.service")

_HTTP_TYPES = {
    404: "NotFound",
    405: "MethodNotAllowed",
    408: "RequestTimeout",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}

# For the OpenAPI spec: the error statuses every compression route can return.
ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        401: "API key missing",
        403: "API key not valid",
        413: "request too large",
        422: "invalid request (the field is named)",
        429: "overloaded; see Retry-After",
        500: "a model failed on this request (ModelError) or an internal error; the service keeps serving",
        503: "not ready or shutting down; see Retry-After",
        504: "timed out",
    }.items()
}


def error_detail(exc: CtxCompressError) -> ErrorDetail:
    return ErrorDetail(type=type(exc).__name__, message=exc.message, field=exc.field)


def _utf8_safe(text: str | None) -> str | None:
    return None if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _json(
    status: int, detail: ErrorDetail, headers: dict[str, str] | None = None, request: Request | None = None
) -> JSONResponse:
    safe = ErrorDetail(type=detail.type, message=_utf8_safe(detail.message) or "", field=_utf8_safe(detail.field))
    if request is not None and request.url.path == ANTHROPIC_PATH:  # the shape the Anthropic SDKs parse
        where = f"{safe.field}: " if safe.field else ""
        return JSONResponse(anthropic_error(status, where + safe.message), status_code=status, headers=headers)
    return JSONResponse(ErrorResponse(error=safe).model_dump(), status_code=status, headers=headers)


def error_response(exc: CtxCompressError, request: Request | None = None) -> JSONResponse:
    headers = None
    if isinstance(exc, Overloaded):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    elif isinstance(exc, Unauthorized) and not isinstance(exc, Forbidden):
        headers = {"WWW-Authenticate": 'Bearer realm="ctxcompress"'}
    return _json(exc.http_status, error_detail(exc), headers, request)


def _unparsable_body_message(cause: BaseException | None) -> str:
    """Why the JSON parser gave up on a body, with the limit that was hit."""
    if isinstance(cause, UnicodeDecodeError):
        return f"request body is not UTF-8 text ({cause.reason} at byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "request body nests JSON arrays/objects deeper than the parser allows (about 1,000 levels)"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return f"request body holds a number longer than the parser allows ({sys.get_int_max_str_digits():,} digits)"
    return "request body could not be parsed as JSON"


def _validation_detail(exc: RequestValidationError) -> ErrorDetail:
    first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ())]
    field = ".".join(loc[1:] if loc and loc[0] == "body" else loc) or "body"
    if first.get("type") == "json_invalid":
        return ErrorDetail(type="InvalidInput", message=f"request body is not valid JSON: {first['msg']}", field="body")
    return ErrorDetail(type="InvalidInput", message=f"invalid request field {field!r}: {first['msg']}", field=field)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the ``{"error": {...}}`` shape."""

    @app.exception_handler(CtxCompressError)
    async def _library(request: Request, exc: CtxCompressError) -> JSONResponse:
        return error_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        body_wrong_type = any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors())
        if body_wrong_type and "json" not in content_type:  # FastAPI read a non-JSON body as raw bytes
            message = (
                f"expected a JSON object body with Content-Type: application/json (got {content_type or 'none'!r})"
            )
            return _json(415, ErrorDetail(type="UnsupportedMediaType", message=message, field="body"), None, request)
        return _json(422, _validation_detail(exc), None, request)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's parser gave up on the body: say which limit it hit
            message = _unparsable_body_message(exc.__cause__)
            return _json(422, ErrorDetail(type="InvalidInput", message=message, field="body"), None, request)
        kind = _HTTP_TYPES.get(exc.status_code, "HTTPError")
        return _json(exc.status_code, ErrorDetail(type=kind, message=str(exc.detail)), exc.headers, request)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return _json(500, ErrorDetail(type="InternalError", message="internal server error"), None, request)
