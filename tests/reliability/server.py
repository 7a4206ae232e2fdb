"""The service as a subprocess on loopback, on a tiny random model (SmolLM2's tokenizer, 2 layers, width 64).

``python -m tests.reliability.server --port P [--fault-injection] [--max-concurrent-requests N] ...`` serves;
:class:`ServerProcess` starts one (or, given ``command``, any server such as the real ``ctxcompress serve
--workers N``), waits for ``/readyz``, samples its RSS (the process and its children), sends signals and reads back
its JSON access log (one line per request, with the ``x-request-id`` the client sent).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["ServerProcess", "cli_serve", "free_port", "main", "tiny_scorer"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children += [int(child) for child in task.read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return children


def _descendants(pid: int) -> list[int]:
    found, pending = [], _children(pid)
    while pending:
        child = pending.pop()
        found.append(child)
        pending += _children(child)
    return found


def _rss_mb(pid: int) -> float:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:  # exited meanwhile
        return 0.0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cli_serve(
    port: int, *, device: str, workers: int, log_level: str, random_kit: str | None, random_dir: Path
) -> tuple[list[str], dict[str, str]]:
    """The real ``ctxcompress serve`` on loopback ``port``, and the environment entries it needs beyond
    ``CTXCOMPRESS_*`` settings: with ``random_kit`` (configs + tokenizers), SmolLM2-135M and MiniLM folders with
    random weights built under ``random_dir`` (``$CTXCOMPRESS_MODELS``; the lent GPU has no weights)."""
    env: dict[str, str] = {}
    if random_kit:
        sys.path.insert(0, str(ROOT / "eval"))
        from ctxcompress_eval.random_models import build_random_models

        env["CTXCOMPRESS_MODELS"] = json.dumps(build_random_models(Path(random_kit), random_dir))
    command = [sys.executable, "-m", "ctxcompress.cli", "serve", "--device", device, "--port", str(port)]
    return [*command, "--workers", str(workers), "--log-level", log_level], env


def tiny_scorer(max_pass_tokens: int = 4096) -> Any:
    """The unit tests' tiny random Llama with the embedded SmolLM2 tokenizer (fast; mechanics only)."""
    from transformers import AutoTokenizer

    from ctxcompress.engines.scorer import CausalLMScorer
    from ctxcompress.models import default_registry
    from tests.tiny_models import tiny_llama

    tokenizer = AutoTokenizer.from_pretrained(default_registry().resolve("smollm2-135m"))
    return CausalLMScorer(tiny_llama(tokenizer, max_positions=4096), tokenizer, max_pass_tokens=max_pass_tokens)


def serve(args: argparse.Namespace) -> None:
    import torch
    import uvicorn
    from ctxcompress_service import Settings, build_app, build_engine
    from ctxcompress_service.cli import connection_options
    from ctxcompress_service.logs import configure_logging
    from ctxcompress_service.testing import FaultInjectingCompressor

    from ctxcompress import Compressor
    from ctxcompress.pool import ModelPool

    torch.set_num_threads(args.threads)
    settings = Settings(
        _env_file=None,
        device=["cpu"],
        preload_models=[],
        warmup=False,
        default_method="llmlingua",
        max_concurrent_requests=args.max_concurrent_requests,
        max_batch_requests=args.max_batch_requests,
        max_wait_ms=args.max_wait_ms,
        request_timeout_s=args.request_timeout_s,
        graceful_shutdown_s=args.graceful_shutdown_s,
        upstream_url=args.upstream_url,
        api_keys_file=args.api_keys_file,
    )
    pool = ModelPool(device="cpu")
    pool.register("scorer", "smollm2-135m", tiny_scorer())
    compressor = (FaultInjectingCompressor if args.fault_injection else Compressor)(pool=pool)
    app = build_app(settings, engine_factory=lambda s: build_engine(s, [compressor]))
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, log_config=configure_logging("info"), **connection_options(settings)
    )


class ServerProcess:
    """A served subprocess: ``start()`` waits for ``/readyz``; the JSON log goes to ``log_path``.

    By default it is this module's tiny-model server with ``options`` as flags; ``command`` (with ``port``, where
    it listens, and ``env``) runs another server instead, e.g. ``ctxcompress serve``.
    """

    def __init__(
        self,
        log_path: Path,
        *,
        command: list[str] | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        ready_checks: int = 1,
        **options: Any,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.command = command
        self.env = env
        self.ready_checks = ready_checks  # consecutive /readyz 200s (new connections: every worker process ready)
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None

    def _tiny_server_command(self) -> list[str]:
        command = [sys.executable, "-m", "tests.reliability.server", "--port", str(self.port)]
        for key, value in self.options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                command.append(flag)
            elif value not in (None, False):
                command += [flag, str(value)]
        return command

    def start(self, timeout_s: float = 180.0) -> ServerProcess:
        command = self.command or self._tiny_server_command()
        env = (self.env or os.environ) | {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline, ready = time.monotonic() + timeout_s, 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited during startup; see {self.log_path}")
            try:
                ready = ready + 1 if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200 else 0
            except httpx.TransportError:
                ready = 0
            if ready >= self.ready_checks:
                return self
            time.sleep(0.2 if ready == 0 else 0.02)
        self.stop()
        raise RuntimeError("server did not become ready")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_mb(self) -> float:
        """Resident set size of the server process and its descendants (worker processes), MiB (Linux ``/proc``)."""
        return sum(_rss_mb(pid) for pid in [self.pid, *_descendants(self.pid)])

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout_s: float = 120.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout_s)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 60 s; the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def access_log(self) -> list[dict[str, Any]]:
        """The server's per-request log lines (``msg == "request"``)."""
        lines = []
        for raw in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if raw.startswith("{"):
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if record.get("msg") == "request":
                    lines.append(record)
        return lines

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve ctxcompress on a tiny random model (loopback)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--max-concurrent-requests", type=int, default=64)
    parser.add_argument("--max-batch-requests", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=0.0)  # ServingOptions.max_wait_ms
    parser.add_argument("--request-timeout-s", type=float, default=60.0)
    parser.add_argument("--graceful-shutdown-s", type=float, default=30.0)
    parser.add_argument("--upstream-url", default=None)
    parser.add_argument("--api-keys-file", default=None, help="named keys with quotas (CTXCOMPRESS_API_KEYS_FILE)")
    parser.add_argument("--fault-injection", action="store_true", help="FaultInjectingCompressor (test hook)")
    serve(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
