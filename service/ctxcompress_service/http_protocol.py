"""The HTTP/1.1 protocol the service runs: uvicorn's h11 protocol with a time limit on request *headers*.

uvicorn bounds idle keep-alive connections but not a request whose headers arrive slowly or never finish (one
byte a minute keeps a connection and its memory forever). Here a connection that has not completed a request's
headers within ``CTXCOMPRESS_HEADER_READ_TIMEOUT_S`` (default 10 s) of opening, or of the first bytes of a later
request on the connection, gets ``408 Request Timeout`` and is closed (idle keep-alive connections are uvicorn's:
closed quietly after its keep-alive timeout). The body has its own limit (``BodyLimitMiddleware``).
"""

from __future__ import annotations

import asyncio
import os

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HeaderTimeoutH11Protocol", "header_read_timeout_s"]

_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 44\r\nconnection: close\r\n\r\n"
    b"request headers did not arrive in time (408)"
)


def header_read_timeout_s() -> float:
    """The limit, from the environment (each ``--workers`` process reads it; the serve command exports it)."""
    return float(os.environ.get("CTXCOMPRESS_HEADER_READ_TIMEOUT_S", "10"))


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus: headers must be complete within the limit (see the module docstring)."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a request's headers are complete: its body has its own limit
            self._disarm()
        elif self._header_timer is None:  # the start of a next request on a keep-alive connection
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(header_read_timeout_s(), self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.write(_REQUEST_TIMEOUT)
            self.transport.close()
