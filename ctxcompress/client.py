"""HTTP clients for the ctxcompress REST service: :class:`CtxCompressClient` and :class:`AsyncCtxCompressClient`.

Both speak the library's types (:class:`~ctxcompress.types.CompressionRequest` in,
:class:`~ctxcompress.types.CompressionResult` out) and raise the service's errors as the matching
:mod:`ctxcompress.errors` class, keeping ``message`` and ``field``
(``Overloaded`` also keeps ``retry_after_s`` from the ``Retry-After`` header).

Example:
    >>> with CtxCompressClient("http://127.0.0.1:8000") as client:
    ...     result = client.compress({"documents": docs, "question": q, "budget": {"rate": 0.3}})
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from ctxcompress.errors import (
    CompressionTimeout,
    CtxCompressError,
    EngineUnavailable,
    Forbidden,
    InvalidInput,
    ModelError,
    ModelNotPrepared,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
    UnknownModel,
    UpstreamError,
    UpstreamNotConfigured,
)
from ctxcompress.types import CompressionRequest, CompressionResult

__all__ = ["AsyncCtxCompressClient", "CtxCompressClient", "error_from_payload"]

RequestLike = CompressionRequest | dict[str, Any]

_BY_NAME: dict[str, type[CtxCompressError]] = {
    cls.__name__: cls
    for cls in (
        CompressionTimeout,
        CtxCompressError,
        EngineUnavailable,
        Forbidden,
        InvalidInput,
        ModelError,
        ModelNotPrepared,
        Overloaded,
        PayloadTooLarge,
        Unauthorized,
        UnknownModel,
        UpstreamError,
        UpstreamNotConfigured,
    )
}
_BY_STATUS: dict[int, type[CtxCompressError]] = {
    401: Unauthorized,
    403: Forbidden,
    413: PayloadTooLarge,
    422: InvalidInput,
    429: Overloaded,
    502: UpstreamError,
    503: EngineUnavailable,
    504: CompressionTimeout,
}


def error_from_payload(
    detail: dict[str, Any], *, status: int | None = None, retry_after: float = 1.0
) -> CtxCompressError:
    """Rebuild the library error from a service error body ``{"type", "message", "field"}``."""
    cls = _BY_NAME.get(str(detail.get("type"))) or _BY_STATUS.get(status or 0) or CtxCompressError
    message = str(detail.get("message") or f"HTTP {status}")
    field = detail.get("field")
    if issubclass(cls, Overloaded):
        exc: CtxCompressError = cls(message, retry_after_s=retry_after)
        exc.field = field
    elif issubclass(cls, (UnknownModel, ModelNotPrepared)):  # their constructors build the message themselves
        exc = CtxCompressError.__new__(cls)
        CtxCompressError.__init__(exc, message, field=field)
        exc.name = ""  # type: ignore[attr-defined]
        if issubclass(cls, UnknownModel):
            exc.known = []  # type: ignore[attr-defined]
    else:
        exc = cls(message, field=field)
    return exc


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        detail = response.json().get("error") or {}
    except (ValueError, AttributeError):
        detail = {"message": response.text[:500] or response.reason_phrase}
    retry = response.headers.get("retry-after", "1")
    raise error_from_payload(
        detail, status=response.status_code, retry_after=float(retry) if retry.replace(".", "", 1).isdigit() else 1.0
    )


def _payload(request: RequestLike) -> dict[str, Any]:
    if isinstance(request, CompressionRequest):
        return request.model_dump(exclude_unset=True)
    return dict(request)


def _batch_results(body: dict[str, Any], return_exceptions: bool) -> list[CompressionResult | CtxCompressError]:
    out: list[CompressionResult | CtxCompressError] = []
    for item in body["results"]:
        if item.get("error"):
            error = error_from_payload(item["error"])
            if not return_exceptions:
                raise error
            out.append(error)
        else:
            out.append(CompressionResult.model_validate(item["result"]))
    return out


class _ClientBase:
    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"accept": "application/json"}
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"


class CtxCompressClient(_ClientBase):
    """Synchronous client.

    Args:
        base_url: the service root, e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``Authorization: Bearer`` when the service requires keys.
        timeout: seconds per HTTP call (a timeout raises :class:`CompressionTimeout`).
    """

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        super().__init__(base_url, api_key=api_key, timeout=timeout)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout)

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.TimeoutException as exc:
            raise CompressionTimeout(f"no response from {self.base_url} within {self.timeout:g} s") from exc
        _raise_for(response)
        return response.json()

    def compress(self, request: RequestLike) -> CompressionResult:
        """``POST /v1/compress``."""
        return CompressionResult.model_validate(self._call("POST", "/v1/compress", _payload(request)))

    def compress_batch(
        self, requests: Sequence[RequestLike], *, return_exceptions: bool = False
    ) -> list[CompressionResult | CtxCompressError]:
        """``POST /v1/compress/batch``; a failed item raises its error unless ``return_exceptions``."""
        body = self._call("POST", "/v1/compress/batch", [_payload(r) for r in requests])
        return _batch_results(body, return_exceptions)

    def recover(self, original: str, compressed: str, response: str) -> str:
        """``POST /v1/recover``: ``response`` with fragments of ``compressed`` mapped back to ``original``."""
        body = {"original": original, "compressed": compressed, "response": response}
        return str(self._call("POST", "/v1/recover", body)["response"])

    def methods(self) -> dict[str, Any]:
        """``GET /v1/methods``: methods, their option schemas, the service's default method and budget."""
        return self._call("GET", "/v1/methods")

    def health(self) -> dict[str, Any]:
        """``GET /readyz``: raises :class:`EngineUnavailable` while the service is not ready."""
        return self._call("GET", "/readyz")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CtxCompressClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncCtxCompressClient(_ClientBase):
    """Asynchronous twin of :class:`CtxCompressClient` (same arguments, awaitable methods)."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        super().__init__(base_url, api_key=api_key, timeout=timeout)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=timeout)

    async def _call(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = await self._http.request(method, path, json=json)
        except httpx.TimeoutException as exc:
            raise CompressionTimeout(f"no response from {self.base_url} within {self.timeout:g} s") from exc
        _raise_for(response)
        return response.json()

    async def compress(self, request: RequestLike) -> CompressionResult:
        return CompressionResult.model_validate(await self._call("POST", "/v1/compress", _payload(request)))

    async def compress_batch(
        self, requests: Sequence[RequestLike], *, return_exceptions: bool = False
    ) -> list[CompressionResult | CtxCompressError]:
        body = await self._call("POST", "/v1/compress/batch", [_payload(r) for r in requests])
        return _batch_results(body, return_exceptions)

    async def recover(self, original: str, compressed: str, response: str) -> str:
        body = {"original": original, "compressed": compressed, "response": response}
        return str((await self._call("POST", "/v1/recover", body))["response"])

    async def methods(self) -> dict[str, Any]:
        return await self._call("GET", "/v1/methods")

    async def health(self) -> dict[str, Any]:
        return await self._call("GET", "/readyz")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncCtxCompressClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
