"""Load test for the REST service (loopback only, bounded): throughput and p50/p99 latency at several
concurrency levels, plus the engine's batch-size histogram from ``/metrics`` for each level, which shows
whether concurrent requests are batched together.

Without ``--url`` the script starts a server on a free loopback port (a subprocess):

* ``--workers N``: the real ``ctxcompress serve`` with N processes and the registry's models (every method), or,
  with ``--random-kit DIR``, SmolLM2-135M and MiniLM folders built there from real configs and tokenizers with
  random weights (the real models' compute, for the lent GPU, which has no weights);
* otherwise an in-script app whose only model is the scorer: the real embedded SmolLM2-135M (``--model real``), a
  tiny randomly initialised model with SmolLM2's tokenizer (``--model tiny``: service mechanics only) or SmolLM2's
  architecture with random weights (``--model random``).

Requests are real NQ rows. Where ``nvidia-smi`` exists, GPU utilisation and memory are sampled every 200 ms during
each level. ``--library-json`` puts a ``ctxcompress bench`` result of the same run (library prompts/s, llmlingua
0.2.2) beside the table.

Usage:
    .venv/bin/python scripts/load_test.py --model tiny --concurrency 1 8 32 --requests 64
    .venv/bin/python scripts/load_test.py --model real --docs 3 --requests 16 --max-seconds 120 --out /tmp/load.json
    python3 scripts/load_test.py --workers 6 --random-kit .carry/prof --device cuda --method hybrid --docs 20 \
        --rate 0.25 --concurrency 1 16 128 --requests 2000 --max-seconds 30 --out rest.json
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import ipaddress
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.tiny_models
DATA = ROOT.parent / "shared" / "data" / "nq_multidoc" / "20docs" / "gold_at_9.jsonl.gz"


def serve(args: argparse.Namespace) -> None:
    """Subprocess mode: run the service on 127.0.0.1:``args.port`` with the chosen model."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import uvicorn
    from ctxcompress_service import Settings, build_app, build_engine

    from ctxcompress import Compressor
    from ctxcompress.engines.scorer import CausalLMScorer
    from ctxcompress.pool import ModelPool

    settings = Settings(
        _env_file=None,
        device=[args.device],
        preload_models=[],
        warmup=False,
        max_wait_ms=args.max_wait_ms,
        max_batch_requests=args.max_batch_requests,
        request_timeout_s=600,
        batches_per_device=args.batches_per_device,
    )
    pool = ModelPool(device=args.device)
    if args.model == "real":
        if args.model_dir:
            pool.register("scorer", "smollm2-135m", CausalLMScorer.from_pretrained(args.model_dir, device=args.device))
        else:
            pool.scorer("smollm2-135m")
    else:
        pool.register("scorer", "smollm2-135m", random_scorer(args.model, args.model_dir, pool))
    app = build_app(settings, engine_factory=lambda s: build_engine(s, [Compressor(pool=pool)]))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


def random_scorer(kind: str, model_dir: str | None, pool: object) -> object:
    """Random weights with SmolLM2's tokenizer: ``tiny`` (2 layers, width 64: service mechanics) or ``random``
    (SmolLM2-135M's own architecture: the real model's compute, meaningless scores)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from ctxcompress.engines.device import default_dtype
    from ctxcompress.engines.scorer import CausalLMScorer
    from tests.tiny_models import tiny_llama

    model_dir = model_dir or pool.registry.resolve("smollm2-135m")  # type: ignore[attr-defined]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if kind == "tiny":
        model = tiny_llama(tokenizer, max_positions=4096)
    else:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir), attn_implementation="sdpa")
    device = pool.device  # type: ignore[attr-defined]
    model = model.to(device=device, dtype=default_dtype(device)).eval()
    return CausalLMScorer(model, tokenizer, max_pass_tokens=pool.max_pass_tokens)  # type: ignore[attr-defined]


def load_requests(path: Path, n_docs: int, method: str, rate: float, limit: int = 200) -> list[dict]:
    requests = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            docs = [f"Document [{i}](Title: {c['title']}) {c['text']}" for i, c in enumerate(row["ctxs"][:n_docs], 1)]
            question = row["question"]
            requests.append({"method": method, "documents": docs, "question": question, "budget": {"rate": rate}})
            if len(requests) == limit:
                break
    return requests


def batch_histogram(metrics_text: str) -> tuple[dict[str, float], float, float]:
    """Cumulative ``ctxcompress_batch_size`` buckets, count and sum from a /metrics page."""
    buckets, count, total = {}, 0.0, 0.0
    for line in metrics_text.splitlines():
        if line.startswith("ctxcompress_batch_size_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[le] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("ctxcompress_batch_size_count"):
            count = float(line.rsplit(" ", 1)[1])
        elif line.startswith("ctxcompress_batch_size_sum"):
            total = float(line.rsplit(" ", 1)[1])
    return buckets, count, total


class GpuSampler:
    """``nvidia-smi`` sampling every 200 ms while a level runs: mean utilisation (%, over samples and GPUs) and the
    highest memory in use (MiB, any GPU). Inert where ``nvidia-smi`` is missing."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self._process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
                + ["-lms", "200"],
                stdout=subprocess.PIPE,
                text=True,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.summary: dict[str, float] = {}
        if self._process is None:
            return
        self._process.terminate()
        output = self._process.communicate(timeout=10)[0]
        samples = [line.split(",") for line in output.splitlines() if line.count(",") == 1]
        if samples:
            self.summary = {
                "gpu_util_mean_pct": round(statistics.mean(float(u) for u, _ in samples), 1),
                "gpu_memory_max_mib": max(float(m) for _, m in samples),
            }


async def run_level(
    url: str, requests: list[dict], concurrency: int, total: int, max_seconds: float, settle_s: float = 0.0
) -> dict:
    """One closed-loop level. Requests sent in its first ``settle_s`` seconds (every caller connecting at once, the
    first batches forming) are left out of the throughput and latency figures (``p99_all_ms`` keeps them)."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        before = batch_histogram((await client.get("/metrics")).text)
        timed: list[tuple[float, float]] = []  # (sent at, seconds since the level started; latency)
        errors: dict[int, int] = {}
        next_index = 0
        started = time.perf_counter()

        async def worker() -> None:
            # Each caller has its own client and connection, as independent callers do. One shared client capped
            # the level at httpx's default pool (100 connections, 20 kept alive: reconnects, queueing in the
            # client) and its pool bookkeeping grows with the connections it holds (httpcore 1.0).
            nonlocal next_index
            async with httpx.AsyncClient(base_url=url, timeout=600) as own:
                while next_index < total and time.perf_counter() - started < max_seconds:
                    body = requests[next_index % len(requests)]
                    next_index += 1
                    t0 = time.perf_counter()
                    response = await own.post("/v1/compress", json=body)
                    if response.status_code == 200:
                        timed.append((t0 - started, time.perf_counter() - t0))
                    else:
                        errors[response.status_code] = errors.get(response.status_code, 0) + 1

        with GpuSampler() as gpu:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        after = batch_histogram((await client.get("/metrics")).text)
    buckets = {le: after[0].get(le, 0.0) - before[0].get(le, 0.0) for le in after[0]}
    batches = after[1] - before[1]
    everything = sorted(latency for _, latency in timed)
    latencies = sorted(latency for sent, latency in timed if sent >= settle_s)
    window = wall - settle_s
    return {
        "concurrency": concurrency,
        "completed": len(latencies),
        "errors": errors,
        "wall_s": round(wall, 2),
        "settle_s": settle_s,
        "throughput_rps": round(len(latencies) / window, 2) if window > 0 else 0.0,
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "p99_all_ms": round(_percentile(everything, 0.99) * 1000, 1) if everything else None,
        "batches": int(batches),
        "mean_batch_size": round((after[2] - before[2]) / batches, 2) if batches else 0.0,
        "batch_size_buckets": {le: int(n) for le, n in buckets.items()},
        **gpu.summary,
    }


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing to load-test {host}: loopback addresses only")


def serve_command(args: argparse.Namespace, port: int) -> tuple[list[str], dict[str, str]]:
    """``ctxcompress serve`` with ``args.workers`` processes, and its environment (batching settings; with
    ``--random-kit`` the random model folders in ``$CTXCOMPRESS_MODELS``)."""
    from tests.reliability.server import cli_serve

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "CTXCOMPRESS_MAX_WAIT_MS": str(args.max_wait_ms),
        "CTXCOMPRESS_MAX_BATCH_REQUESTS": str(args.max_batch_requests),
        "CTXCOMPRESS_BATCHES_PER_DEVICE": str(args.batches_per_device),
        "CTXCOMPRESS_PRELOAD_MODELS": "smollm2-135m,minilm-l6",
        "CTXCOMPRESS_DEFAULT_METHOD": args.method,
        # Requests cycle through the rows: a chunk cache would serve repeats (off unless asked for).
        "CTXCOMPRESS_CHUNK_CACHE_MB": str(args.chunk_cache_mb),
    }
    command, extra = cli_serve(
        port,
        device=args.device,
        workers=args.workers,
        log_level="warning",
        random_kit=args.random_kit,
        random_dir=Path(args.random_dir),
    )
    return command, env | extra


def start_server(args: argparse.Namespace) -> tuple[str, subprocess.Popen]:
    import httpx

    port = free_port()
    env = None
    if args.workers:
        command, env = serve_command(args, port)
    else:
        command = script_server_command(args, port)
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            ready = httpx.get(f"{url}/readyz", timeout=2)
            if ready.status_code == 200:
                return url, process
            if "failed" in ready.text:  # model preparation failed: it will never become ready
                process.kill()
                raise SystemExit(f"the server cannot become ready: {ready.text[:500]}")
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise SystemExit("the server exited during startup")
        time.sleep(0.5)
    process.kill()
    raise SystemExit("the server did not become ready")


def script_server_command(args: argparse.Namespace, port: int) -> list[str]:
    command = [
        sys.executable,
        __file__,
        "--serve",
        "--port",
        str(port),
        "--model",
        args.model,
        "--device",
        args.device,
        "--max-wait-ms",
        str(args.max_wait_ms),
        "--max-batch-requests",
        str(args.max_batch_requests),
        "--batches-per-device",
        str(args.batches_per_device),
    ]
    if args.model_dir:
        command += ["--model-dir", args.model_dir]
    return command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running service on loopback (default: start one)")
    parser.add_argument(
        "--model",
        choices=["tiny", "random", "real"],
        default="tiny",
        help="tiny: 2-layer random model (mechanics); random: SmolLM2-135M architecture, random weights; real",
    )
    parser.add_argument("--model-dir", help="SmolLM2 folder (default: the converted embedded model)")
    parser.add_argument("--workers", type=int, default=0, help="run the real `ctxcompress serve` with N processes")
    parser.add_argument("--random-kit", help="with --workers: configs+tokenizers folder; random-weight models")
    parser.add_argument("--random-dir", default="/tmp/ctxc-random", help="where --random-kit's models are built")
    parser.add_argument("--chunk-cache-mb", type=int, default=0, help="with --workers: the service's chunk cache")
    parser.add_argument("--warmup", type=int, default=2, help="requests sent (16 at a time) before the levels")
    parser.add_argument("--library-json", help="a `ctxcompress bench` bench.json of this run, shown beside")
    parser.add_argument("--data", default=str(DATA), help="NQ multi-document JSONL.gz")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=64, help="requests per level (at most)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per level: stop sending after this")
    parser.add_argument(
        "--settle-s",
        type=float,
        default=0.0,
        help="per level: requests sent in the first seconds (all callers connecting at once) are not counted",
    )
    parser.add_argument("--docs", type=int, default=5, help="NQ documents per request")
    parser.add_argument("--method", default="longllmlingua")
    parser.add_argument("--rate", type=float, default=0.4)
    parser.add_argument("--max-wait-ms", type=float, default=0.0)  # ServingOptions.max_wait_ms
    parser.add_argument("--max-batch-requests", type=int, default=32)
    parser.add_argument("--batches-per-device", type=int, default=2, help="2 = prefetch one batch, 1 = none")
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return 0
    process = None
    if args.url:
        check_loopback(args.url)
        url = args.url
    else:
        url, process = start_server(args)
    try:
        requests = load_requests(Path(args.data), args.docs, args.method, args.rate, limit=args.requests + args.warmup)
        warm = requests[: max(args.warmup, 1)]
        asyncio.run(run_level(url, warm, min(16, len(warm)), len(warm), args.max_seconds))  # not reported
        results = [
            asyncio.run(run_level(url, requests, c, max(args.requests, c), args.max_seconds, args.settle_s))
            for c in args.concurrency
        ]
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
    server = f"serve --workers {args.workers}" + (" (random weights)" if args.random_kit else "")
    print(
        f"server={server if args.workers else 'script, model=' + args.model} device={args.device} "
        f"method={args.method} docs/request={args.docs} rate={args.rate}"
    )
    print(
        f"{'clients':>7} {'done':>5} {'req/s':>7} {'p50 ms':>9} {'p99 ms':>9} {'p99 all':>9} {'batches':>7} "
        f"{'mean':>5} {'GPU %':>6}  sizes"
    )
    for r in results:
        hist = " ".join(f"<={le}:{n}" for le, n in per_bucket(r["batch_size_buckets"]).items() if n)
        errors = f"  errors={r['errors']}" if r["errors"] else ""
        print(
            f"{r['concurrency']:>7} {r['completed']:>5} {r['throughput_rps']:>7} {r['p50_ms']!s:>9} "
            f"{r['p99_ms']!s:>9} {r['p99_all_ms']!s:>9} {r['batches']:>7} {r['mean_batch_size']:>5} "
            f"{r.get('gpu_util_mean_pct', '-')!s:>6}  "
            f"{hist}{errors}"
        )
    library = library_figures(Path(args.library_json)) if args.library_json else None
    if library:
        print("beside (ctxcompress bench, same run): " + "; ".join(f"{k} {v}" for k, v in library.items()))
    if args.out:
        report = {"args": vars(args), "results": results, "library": library}
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


def per_bucket(cumulative: dict[str, int]) -> dict[str, int]:
    """Prometheus' cumulative ``le`` buckets → batches per bucket."""
    out, below = {}, 0
    for le, count in sorted(cumulative.items(), key=lambda item: float(item[0])):
        out[le] = count - below
        below = count
    return out


def library_figures(path: Path) -> dict[str, object]:
    """The library's best prompts/s and single-request p50, and llmlingua 0.2.2's, from a bench.json."""
    bench = json.loads(path.read_text())
    best = max(bench["ctxcompress"], key=lambda r: r["prompts_per_s"])
    anchor = bench.get("llmlingua_0_2_2") or {}
    return {
        "library prompts/s": round(best["prompts_per_s"], 1),
        "at batch": best["batch_size"],
        "library single p50 ms": round(bench["single_request"]["latency_ms_p50"], 1),
        "llmlingua prompts/s": anchor.get("prompts_per_s"),
    }


if __name__ == "__main__":
    raise SystemExit(main())
