"""``ctxcompress serve``: run the REST service (uvicorn) on the embedded models, offline.

Flags override the ``CTXCOMPRESS_*`` environment (see :mod:`ctxcompress_service.settings`). SIGTERM/SIGINT
drain gracefully: uvicorn stops accepting, lets in-flight requests finish, then the engine drains and stops.
``--workers N`` runs N server processes on the port, each building the app from the environment with
:func:`ctxcompress_service.app.app_from_env`: on Linux each accepts on its own ``SO_REUSEPORT`` socket
(:mod:`ctxcompress_service.supervisor`), elsewhere they share one (uvicorn's supervisor).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from ctxcompress.commands.engine_flags import add_engine_flags, engine_overrides

if TYPE_CHECKING:
    from ctxcompress_service.settings import Settings

__all__ = ["configure", "connection_options", "run", "set_serving_defaults"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default 127.0.0.1, env CTXCOMPRESS_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default 8000, env CTXCOMPRESS_PORT)")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda:0,cuda:1 (env CTXCOMPRESS_DEVICE)")
    parser.add_argument("--upstream-url", default=None, help="OpenAI-compatible base URL for the chat proxy")
    parser.add_argument("--log-level", default=None, help="debug | info | warning (env CTXCOMPRESS_LOG_LEVEL)")
    parser.add_argument(
        "--workers",
        default=None,
        help="server processes, each with its own engine: N or auto (default: 1 on CPU; on GPUs one per 14 GiB of "
        "the smallest GPU and per 1.6 host cores, whichever is fewer; env CTXCOMPRESS_WORKERS)",
    )
    add_engine_flags(parser)  # env CTXCOMPRESS_MAX_PASS_TOKENS, _DECODER, _KERNELS, _GRAPHS, _COMPILE


def connection_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for every server process of ``serve``: the HTTP protocol with the header-read limit, no
    access log of uvicorn's own (the app logs each request), the drain time and the keep-alive time."""
    from ctxcompress_service.http_protocol import HeaderTimeoutH11Protocol

    return {
        "http": HeaderTimeoutH11Protocol,
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.graceful_shutdown_s),
        "timeout_keep_alive": settings.keep_alive_s,
    }


def set_serving_defaults(environ: MutableMapping[str, str]) -> None:
    """Process settings the service wants unless the operator chose otherwise (read before torch starts CUDA;
    worker processes inherit them): offline model hubs, serial tokenizers (several worker processes share the
    cores), and growable CUDA allocator segments: batches of many sizes fragment fixed segments (over 150 NQ
    batches one worker reserved 11.0 GiB for a 3.0 GiB peak, 6.2 GiB with growable ones:
    eval/results/bench_h200/reuse_port_memory)."""
    environ.setdefault("HF_HUB_OFFLINE", "1")
    environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not any(name in environ for name in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")):
        environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"


def run(args: argparse.Namespace) -> int:
    set_serving_defaults(os.environ)
    import uvicorn

    from ctxcompress_service.app import build_app
    from ctxcompress_service.logs import configure_logging
    from ctxcompress_service.settings import Settings

    overrides = {
        key: value
        for key, value in {
            "host": args.host,
            "port": args.port,
            "device": args.device,
            "upstream_url": args.upstream_url,
            "log_level": args.log_level,
            "workers": args.workers,
            **engine_overrides(args),
        }.items()
        if value is not None
    }
    settings = Settings(**overrides)
    log_config = configure_logging(settings.log_level)
    os.environ["CTXCOMPRESS_HEADER_READ_TIMEOUT_S"] = str(settings.header_read_timeout_s)  # read per connection
    common = {"host": settings.host, "port": settings.port, "log_config": log_config, **connection_options(settings)}
    workers = settings.worker_count()
    if workers == 1:
        uvicorn.run(build_app(settings), **common)
        return 0
    # Worker processes rebuild the settings from the environment, so the flags travel there.
    for key, value in overrides.items():
        os.environ[f"CTXCOMPRESS_{key.upper()}"] = str(value)
    # Metrics of all workers are summed at every scrape (prometheus-client multiprocess mode, a fresh folder).
    from ctxcompress_service.metrics import STARTED_AT_ENV

    with tempfile.TemporaryDirectory(prefix="ctxcompress-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        os.environ[STARTED_AT_ENV] = str(time.time())  # one start time for every worker's /v1/stats
        if settings.reuse_port:
            from ctxcompress_service.supervisor import run_workers

            return run_workers(workers, **common)
        uvicorn.run("ctxcompress_service.app:app_from_env", factory=True, workers=workers, **common)
    return 0
