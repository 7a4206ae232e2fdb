"""Load test for the REST service (loopback only, bounded): throughput and p50/p99 latency at several
concurrency levels, plus the engine's batch-size histogram from ``/metrics`` for each level, which shows
whether concurrent requests are batched together.

Without ``--url`` the script starts its own server on a free loopback port (a subprocess) with either the real
embedded SmolLM2-135M (``--model real``) or a tiny randomly initialised model with SmolLM2's tokenizer
(``--model tiny``: service mechanics only) or SmolLM2's architecture with random weights (``--model random``:
the real model's compute, for machines without the converted model). Requests are real NQ rows.

Usage:
    .venv/bin/python scripts/load_test.py --model tiny --concurrency 1 8 32 --requests 64
    .venv/bin/python scripts/load_test.py --model real --docs 3 --requests 16 --max-seconds 120 --out /tmp/load.json
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import ipaddress
import json
import os
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


async def run_level(url: str, requests: list[dict], concurrency: int, total: int, max_seconds: float) -> dict:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        before = batch_histogram((await client.get("/metrics")).text)
        latencies: list[float] = []
        errors: dict[int, int] = {}
        next_index = 0
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal next_index
            while next_index < total and time.perf_counter() - started < max_seconds:
                body = requests[next_index % len(requests)]
                next_index += 1
                t0 = time.perf_counter()
                response = await client.post("/v1/compress", json=body)
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[response.status_code] = errors.get(response.status_code, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        after = batch_histogram((await client.get("/metrics")).text)
    buckets = {le: after[0].get(le, 0.0) - before[0].get(le, 0.0) for le in after[0]}
    batches = after[1] - before[1]
    latencies.sort()
    return {
        "concurrency": concurrency,
        "completed": len(latencies),
        "errors": errors,
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 2) if wall else 0.0,
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "batches": int(batches),
        "mean_batch_size": round((after[2] - before[2]) / batches, 2) if batches else 0.0,
        "batch_size_buckets": {le: int(n) for le, n in buckets.items()},
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


def start_server(args: argparse.Namespace) -> tuple[str, subprocess.Popen]:
    import httpx

    port = free_port()
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
    process = subprocess.Popen(command, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return url, process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise SystemExit("the server exited during startup")
        time.sleep(0.5)
    process.kill()
    raise SystemExit("the server did not become ready")


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
    parser.add_argument("--data", default=str(DATA), help="NQ multi-document JSONL.gz")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=64, help="requests per level (at most)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per level: stop sending after this")
    parser.add_argument("--docs", type=int, default=5, help="NQ documents per request")
    parser.add_argument("--method", default="longllmlingua")
    parser.add_argument("--rate", type=float, default=0.4)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
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
        requests = load_requests(Path(args.data), args.docs, args.method, args.rate)
        asyncio.run(run_level(url, requests[:2], 1, 2, args.max_seconds))  # warm-up, not reported
        results = [
            asyncio.run(run_level(url, requests, c, max(args.requests, c), args.max_seconds)) for c in args.concurrency
        ]
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
    print(f"model={args.model} device={args.device} method={args.method} docs/request={args.docs} rate={args.rate}")
    print(f"{'clients':>7} {'done':>5} {'req/s':>7} {'p50 ms':>9} {'p99 ms':>9} {'batches':>7} {'mean':>5}  sizes")
    for r in results:
        hist = " ".join(f"<={le}:{n}" for le, n in r["batch_size_buckets"].items() if le != "+Inf")
        errors = f"  errors={r['errors']}" if r["errors"] else ""
        print(
            f"{r['concurrency']:>7} {r['completed']:>5} {r['throughput_rps']:>7} {r['p50_ms']!s:>9} "
            f"{r['p99_ms']!s:>9} {r['batches']:>7} {r['mean_batch_size']:>5}  {hist}{errors}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
