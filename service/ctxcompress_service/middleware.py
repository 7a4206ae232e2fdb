"""ASGI middleware: request-size limit (413) and per-request metrics + one structured log line."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ctxcompress_service.metrics import Metrics

__all__ = ["BodyLimitMiddleware", "ObservabilityMiddleware"]

logger = logging.getLogger("ctxcompress.service.access")


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes``: by ``Content-Length`` before reading, else while streaming in."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_413(send, self.max_bytes)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, f"request body exceeds {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


async def _send_413(send: Send, limit: int) -> None:
    import json

    body = json.dumps(
        {"error": {"type": "PayloadTooLarge", "message": f"request body exceeds {limit} bytes", "field": None}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
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
