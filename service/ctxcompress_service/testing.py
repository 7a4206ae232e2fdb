"""Test hooks: run an app on a real loopback port in a background thread (tests, load tests, notebooks), and a
Compressor that crashes on demand (fault drills).

Nothing here is reachable from a request: the app only uses these when code builds it with
``build_app(settings, engine_factory=...)``; ``ctxcompress serve`` never does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import uvicorn

from ctxcompress.compressor import Compressor
from ctxcompress.errors import CtxCompressError
from ctxcompress.prompting import PreparedRequest
from ctxcompress.types import CompressionResult
from ctxcompress_service.http_protocol import HeaderTimeoutH11Protocol

__all__ = ["FAULT_MARKER", "FaultInjectingCompressor", "InjectedFault", "ServiceThread"]

FAULT_MARKER = "ctxcompress-injected-fault"


class InjectedFault(RuntimeError):
    """The exception :class:`FaultInjectingCompressor` raises: an unexpected crash inside a model worker."""


class FaultInjectingCompressor(Compressor):
    """A real Compressor whose batches (``compress_prepared``, which ``compress_batch`` and the engine call) raise
    :class:`InjectedFault` (not a ``CtxCompressError``: a crash, like a CUDA error) whenever a request's question
    contains :data:`FAULT_MARKER`. Requests without the marker compress normally. Use through
    ``build_app(settings, engine_factory=lambda s: build_engine(s, [c]))``.
    """

    def compress_prepared(
        self, prepared: Sequence[PreparedRequest | CtxCompressError], *, return_exceptions: bool = False
    ) -> list[CompressionResult | CtxCompressError]:
        for item in prepared:
            if isinstance(item, PreparedRequest) and FAULT_MARKER in str(item.request.question or ""):
                raise InjectedFault("injected model worker failure")
        return super().compress_prepared(prepared, return_exceptions=return_exceptions)


class ServiceThread:
    """uvicorn serving ``app`` on ``127.0.0.1`` (a free port by default) in a daemon thread.

    ``stop()`` does what SIGTERM does: stop accepting, let in-flight requests finish, run the lifespan's
    shutdown (engine drain). Use as a context manager.
    """

    def __init__(self, app: Any, *, port: int = 0, graceful_s: int = 30, **options: Any) -> None:
        """``options``: more ``uvicorn.Config`` options (e.g. ``cli.connection_options(settings)``)."""
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            **{"timeout_graceful_shutdown": graceful_s, "http": HeaderTimeoutH11Protocol} | options,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="ctxcompress-service", daemon=True)

    @property
    def url(self) -> str:
        sockets = self.server.servers[0].sockets
        return f"http://127.0.0.1:{sockets[0].getsockname()[1]}"

    def start(self, timeout_s: float = 30.0) -> ServiceThread:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout_s)

    def __enter__(self) -> ServiceThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
