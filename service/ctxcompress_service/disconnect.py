"""Cancel a request's work when its HTTP client goes away, so the engine drops it before it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from ctxcompress.errors import CtxCompressError

__all__ = ["ClientClosedRequest", "cancel_on_disconnect"]

T = TypeVar("T")


class ClientClosedRequest(CtxCompressError):
    """The client disconnected before the response was ready (nginx's 499); nobody reads the response."""

    http_status = 499


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next ASGI message is ``http.disconnect`` (or nothing until the response).
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it (the engine then drops the queued request)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    raise ClientClosedRequest("client closed the connection before the response was ready")
