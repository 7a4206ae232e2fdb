"""``serve --workers N`` on Linux: N server processes, each accepting on its own ``SO_REUSEPORT`` socket.

uvicorn's own supervisor gives every worker the one listening socket, and whichever worker's event loop is idle
when a burst of connections arrives accepts nearly all of them (asyncio takes every pending connection in one
wake-up); keep-alive then pins those callers there. With one socket per worker bound to the same port, the Linux
kernel hashes each new connection onto one of the sockets, so connections spread like balls into bins: here, 128
keep-alive callers over 10 processes landed 18..8 per process instead of 49/48/28/1/1/1/0/0/0/0 with the shared
socket (the same burst, plain asyncio servers). nginx's and gunicorn's ``reuseport`` do the same.

The supervisor binds the sockets (a busy port fails at once, in the parent), starts each worker with the
``spawn`` start method on its socket, restarts a worker that dies on the same socket (connections the kernel
queued there wait for it instead of being lost), and on SIGTERM/SIGINT passes SIGTERM on and waits: each worker
drains as a lone ``serve`` does. A worker that fails before serving (uvicorn's exit code 3: app, models or
settings broken) stops the whole service rather than restarting forever.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from typing import Any

from uvicorn.config import STARTUP_FAILURE

__all__ = ["bind_reuse_port", "run_workers"]

logger = logging.getLogger("uvicorn.error")

APP_FACTORY = "ctxcompress_service.app:app_from_env"
POLL_S = 0.5
"""How often the supervisor checks its workers and pending signals."""


def bind_reuse_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (not yet listening: the worker listens)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _serve_on(sock: socket.socket, app_factory: str, uvicorn_kwargs: dict[str, Any]) -> None:
    """A worker: the app ``app_factory`` builds, served on ``sock`` until SIGTERM."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app_factory, factory=True, **uvicorn_kwargs))
    try:
        server.run(sockets=[sock])
    except Exception:
        if server.started:
            raise
        logger.exception("worker failed before serving")
        sys.exit(STARTUP_FAILURE)  # the supervisor stops instead of restarting it forever


def run_workers(count: int, *, host: str, port: int, app_factory: str = APP_FACTORY, **uvicorn_kwargs: Any) -> int:
    """Serve on ``host:port`` with ``count`` worker processes, one ``SO_REUSEPORT`` socket each, until SIGTERM/SIGINT.

    ``app_factory`` ("module:function") builds each worker's app; the service's builds the settings from the
    environment. ``uvicorn_kwargs`` go to each worker's ``uvicorn.Config`` (protocol, logging, graceful
    shutdown). Returns the exit status: 0, or 1 when a worker failed to start.
    """
    sockets = [bind_reuse_port(host, port)]
    port = sockets[0].getsockname()[1]  # port 0: the others join the port the first one got
    sockets += [bind_reuse_port(host, port) for _ in range(count - 1)]
    logger.info("Serving on %s port %d with %d workers, one SO_REUSEPORT socket each", host, port, count)
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}

    def start(slot: int) -> multiprocessing.process.BaseProcess:
        arguments = (sockets[slot], app_factory, uvicorn_kwargs)
        process = context.Process(target=_serve_on, args=arguments, name=f"worker-{slot}")
        process.start()
        return process

    status = 0
    try:
        workers = [start(slot) for slot in range(count)]
        while not stop.wait(POLL_S):
            for slot, process in enumerate(workers):
                if process.exitcode is None:
                    continue
                if process.exitcode == STARTUP_FAILURE:
                    logger.error("Worker %d (pid %s) failed to start; stopping the service", slot, process.pid)
                    status = 1
                    stop.set()
                    break
                logger.warning("Worker %d (pid %s) exited with %s; restarting it", slot, process.pid, process.exitcode)
                workers[slot] = start(slot)
        for process in workers:
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in workers:
            process.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sock in sockets:
            sock.close()
    logger.info("Stopped %d workers", count)
    return status
