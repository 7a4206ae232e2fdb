"""Keep-alive connections spread over the ``serve --workers N`` processes.

Where the processes share one listening socket (``REUSE_PORT`` off, or not Linux), asyncio accepts every pending
connection in one wake-up (up to the listen backlog), so a burst of new connections (a client pool opening at
once) lands on one or two processes; keep-alive then pins the callers there: those processes queue while the
others idle. (On one H200, 128 callers
over 10 processes: 412 of 558 batches held one request, beside batches of 17-32, and p99 was 7x the median.)

A process whose admitted requests exceed its peers' mean by a margin answers with ``Connection: close``; the
caller reconnects, and the accept most likely goes to a process with an idle event loop, which wakes first.
nginx closes keep-alive connections after ``keepalive_requests`` for the same reason; this closes them only where
load piles up. The peers' mean comes from the in-flight gauge each process writes for the metrics, read once a
second (``Metrics.mean_in_flight``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ConnectionBalancer", "PeerLoad"]

CROWDED_FACTOR = 1.5
"""A process is crowded above this multiple of the mean admitted requests per process ..."""
CROWDED_MARGIN = 2
"""... plus this many requests (a few more than the mean is noise, not a pile-up)."""


@dataclass
class PeerLoad:
    """The mean admitted requests per server process, refreshed once a second (``None`` until known)."""

    mean_in_flight: float | None = None

    def crowded(self, own_in_flight: int) -> bool:
        """Whether this process holds a pile-up its peers do not."""
        mean = self.mean_in_flight
        return mean is not None and own_in_flight > CROWDED_FACTOR * mean + CROWDED_MARGIN


class ConnectionBalancer:
    """ASGI middleware: a response from a crowded process carries ``Connection: close`` (decided when the
    response starts, from ``in_flight()``: this process's admitted requests)."""

    def __init__(self, app: ASGIApp, *, peers: PeerLoad, in_flight: Callable[[], int]) -> None:
        self.app = app
        self.peers = peers
        self.in_flight = in_flight
        self.closed = 0  # connections asked to close (for tests and logs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing_when_crowded(message: Message) -> None:
            if message["type"] == "http.response.start" and self.peers.crowded(self.in_flight()):
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
                self.closed += 1
            await send(message)

        await self.app(scope, receive, send_closing_when_crowded)
