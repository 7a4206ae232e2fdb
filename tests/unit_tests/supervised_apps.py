"""ASGI app factories for the supervisor tests (imported by name in spawned worker processes)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["broken_app", "pid_app"]


def pid_app() -> Any:
    """Answers every request with the process id of the worker that served it."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = str(os.getpid()).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    return app


def broken_app() -> Any:
    """A factory that fails, as the service's does when its settings or models are broken."""
    raise RuntimeError("no models here")
