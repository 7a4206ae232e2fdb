"""ASGI middleware: request-size limit (413), slow-body limit (408), API keys before anything is parsed (401/403),
per-request metrics + one structured log line."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ctxcompress_service.anthropic_proxy import ANTHROPIC_PATH, anthropic_error
from ctxcompress_service.keys import KeyRing
from ctxcompress_service.metrics import Metrics

__all__ = ["ApiKeyMiddleware", "BodyLimitMiddleware", "ObservabilityMiddleware"]

logger = logging.getLogger("ctxcompress.service.access")


class ApiKeyMiddleware:
    """With API keys configured, ``/v1/*`` answers 401 (with ``WWW-Authenticate``) or 403 before the body is read,
    so an unauthenticated caller learns nothing about the request's validity. The key comes as
    ``Authorization: Bearer <key>`` or, as the Anthropic SDKs send it, ``x-api-key: <key>``; on ``/v1/messages``
    errors have the Anthropic shape. A key over its quota (``keys.py``) gets 429 with ``Retry-After`` on POSTs;
    per-key requests, tokens and refusals are counted in the metrics."""

    def __init__(self, app: ASGIApp, *, keyring: KeyRing, metrics: Metrics) -> None:
        self.app = app
        self.keyring = keyring
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/") or not self.keyring.enabled:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        scheme, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        key = key.strip() if scheme.lower() == "bearer" else ""
        key = key or headers.get(b"x-api-key", b"").decode("latin-1").strip()
        anthropic = scope["path"] == ANTHROPIC_PATH
        quota = self.keyring.find(key) if key else None
        if not key:
            message = "API key required: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
            challenge = [(b"www-authenticate", b'Bearer realm="ctxcompress"')]
            await _send_error(send, 401, "Unauthorized", message, challenge, anthropic=anthropic)
            return
        if quota is None:
            await _send_error(send, 403, "Forbidden", "API key is not valid", anthropic=anthropic)
            return
        name = quota.key.name
        scope.setdefault("state", {})["api_key"] = quota.key  # who is calling: read by auth.caller_key
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        wait = self.keyring.admit(quota)
        if wait > 0:
            self.metrics.key_rejected.labels(name).inc()
            retry = [(b"retry-after", str(max(1, math.ceil(wait))).encode())]
            message = f"API key {name!r} is over its quota; retry after {max(1, math.ceil(wait))} s"
            await _send_error(send, 429, "Overloaded", message, retry, anthropic=anthropic)
            return
        fields: dict[str, Any] = {}
        try:
            await self.app(scope, receive, send)
        finally:
            fields = scope.get("state", {}).get("log_fields", {})
            origin = int(fields.get("origin_tokens", 0) or 0)
            self.keyring.release(quota, origin)
            self.metrics.key_requests.labels(name).inc()


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` (413): by ``Content-Length`` before reading, else while streaming in; and
    bodies that stall (408): no part of the body for ``read_timeout_s`` (e.g. shorter than its ``Content-Length``)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, read_timeout_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_413(send, self.max_bytes)
            return
        seen = 0
        body_done = False

        async def limited() -> Message:
            nonlocal seen, body_done
            if body_done:  # after the body, receive() waits for the disconnect: no time limit
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout_s)
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"request body stalled: nothing arrived for {self.read_timeout_s:g} s (is Content-Length right?)",
                ) from None
            seen += len(message.get("body", b""))
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            if seen > self.max_bytes:
                raise HTTPException(413, f"request body exceeds {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


async def _send_413(send: Send, limit: int) -> None:
    await _send_error(send, 413, "PayloadTooLarge", f"request body exceeds {limit} bytes")


async def _send_error(
    send: Send,
    status: int,
    kind: str,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    anthropic: bool = False,
) -> None:
    """The service's ``{"error": ...}`` response (or the Anthropic shape), sent before any route runs."""
    if anthropic:
        body = json.dumps(anthropic_error(status, message)).encode()
    else:
        body = json.dumps({"error": {"type": kind, "message": message, "field": None}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ObservabilityMiddleware:
    """Counts and times every request by route template and status; logs one JSON line (no prompt text)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode() or uuid.uuid4().hex[:16]
        status = {"code": 500}
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", "unmatched")
            seconds = time.perf_counter() - started
            self.metrics.observe_request(path, scope["method"], status["code"], seconds)
            logger.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "route": path,
                    "status": status["code"],
                    "ms": round(seconds * 1000, 2),
                    **scope["state"].get("log_fields", {}),
                },
            )
