"""Run an app on a real loopback port in a background thread (tests, load tests, notebooks)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

__all__ = ["ServiceThread"]


class ServiceThread:
    """uvicorn serving ``app`` on ``127.0.0.1`` (a free port by default) in a daemon thread.

    ``stop()`` does what SIGTERM does: stop accepting, let in-flight requests finish, run the lifespan's
    shutdown (engine drain). Use as a context manager.
    """

    def __init__(self, app: Any, *, port: int = 0, graceful_s: int = 30) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
            timeout_graceful_shutdown=graceful_s,
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
