"""``ctxcompress bench``: throughput of the batched engine against microsoft llmlingua 0.2.2.

One run measures, on the same machine, model architecture and NQ 20-document inputs:

* the device's bf16 (CUDA) / fp32 (CPU) matrix-multiply rate (the roofline used for "% of peak");
* ctxcompress ``compress_batch`` at several batch sizes: prompts/s, input tokens/s, model tokens/s, achieved
  TFLOP/s (2 · parameters · tokens through the language model: scorer passes and attention-probe prefills) and its
  share of the measured matmul rate, peak GPU memory;
* single-request latency p50/p90 (batch size 1);
* llmlingua 0.2.2 in the same mode (its own pinned environment, ``eval/anchor/run_anchor.py``) on the same
  model weights: prompts/s and latency.

``--random-weights`` builds the model from the real config and tokenizer with randomly initialised weights:
speed does not depend on weight values, so GPU runs need not carry 0.5 GB of weights. Output says so.
Writes ``bench.json`` and ``bench.md`` to ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["configure", "run"]

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nq_multidoc" / "20docs"
# Share of the GPU's memory divided among --processes engine processes (the rest: the main process's scorer).
ENGINE_MEMORY_SHARE = 0.85
ANCHOR_SCRIPT = Path(__file__).resolve().parents[1] / "anchor" / "run_anchor.py"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto")
    parser.add_argument("--limit", type=int, default=256, help="prompts per batch-size run")
    parser.add_argument("--batch-sizes", default="1,8,64,256")
    parser.add_argument(
        "--method",
        default="longllmlingua",
        choices=["longllmlingua", "llmlingua", "hybrid", "attention", "cpc"],
        help="hybrid/attention/cpc load the sentence encoder from the registry ($CTXCOMPRESS_MODELS); the "
        "%% of peak counts the language model's tokens only (scorer passes and attention-probe prefills), not the "
        "encoder's",
    )
    parser.add_argument("--rate", type=float, default=0.25)
    parser.add_argument("--data", nargs="*", default=None, help="NQ 20-doc .jsonl.gz files (default: ../shared)")
    parser.add_argument("--model-dir", default=None, help="model folder (default: the embedded smollm2-135m)")
    parser.add_argument("--random-weights", action="store_true", help="real config+tokenizer, random weights")
    parser.add_argument("--max-pass-tokens", type=int, default=None)
    parser.add_argument("--decoder", default="auto", choices=["auto", "fused", "transformers"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the decoder (opt-in engine flag)")
    parser.add_argument(
        "--encoder-dtype", default="auto", choices=["auto", "float32", "float16"], help="sentence encoder precision"
    )
    parser.add_argument(
        "--kernels", default="auto", choices=["auto", "triton", "torch"], help="fused decoder element-wise kernels"
    )
    parser.add_argument(
        "--graphs", default="auto", choices=["auto", "on", "off"], help="CUDA graphs for small passes (engine flag)"
    )
    parser.add_argument("--single-requests", type=int, default=20, help="requests timed one by one for p50/p90")
    parser.add_argument(
        "--single-warmup",
        type=int,
        default=8,
        help="requests run one by one before timing single requests (records the common CUDA graph shapes, as a "
        "serving process does over its first requests); the timed prompts are still unseen",
    )
    parser.add_argument("--anchor-python", default=None, help="python of the llmlingua 0.2.2 env (skip if unset)")
    parser.add_argument("--anchor-limit", type=int, default=10)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 on CUDA, as serve's GPU workers; torch's own on CPU)",
    )
    parser.add_argument("--profile", action="store_true", help="torch.profiler tables: one request, one batch")
    parser.add_argument(
        "--profile-stacks",
        action="store_true",
        help="with --profile: also the batch's operators grouped by the Python lines that launched them",
    )
    parser.add_argument("--cprofile", action="store_true", help="Python cProfile of one batch of 64 (host work)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="threads sharing the model: each takes a slice of a batch, so one's host work overlaps another's GPU work",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="engine processes sharing the device (as `ctxcompress serve --workers N`): each loads the model and "
        "takes a slice of a batch, so one's host work overlaps another's GPU work without sharing a GIL",
    )
    parser.add_argument(
        "--chunk",
        type=int,
        default=0,
        help="with --processes: deal each batch out in chunks of this many requests, the next chunk to whichever "
        "process is free (as a queue in front of the processes would), so they drift apart and one's host work "
        "overlaps the others' GPU work; 0: one equal slice per process, all sent at once",
    )
    parser.add_argument(
        "--gpus",
        type=int,
        default=1,
        help="CUDA devices the engine processes spread over (process i on cuda:i mod N; --processes is raised to N "
        "at least): the data-parallel deployment of `serve --device cuda:0,cuda:1`",
    )
    parser.add_argument("--out", default="bench_out")


def data_paths(data: list[str] | None) -> list[Path]:
    """The NQ 20-doc files given, else every ``gold_at_*`` file of the shared data."""
    return [Path(p) for p in data] if data else sorted(DEFAULT_DATA.glob("gold_at_*.jsonl.gz"))


def emit_report(report: dict, out: str) -> None:
    """Print ``report`` as JSON and write it to ``out`` (the eval checks' output)."""
    text = json.dumps(report, indent=1)
    Path(out).write_text(text + "\n", encoding="utf-8")
    print(text)


def _rows(paths: list[Path], count: int) -> list[dict]:
    rows: list[dict] = []
    for path in paths:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            rows += [json.loads(line) for line in handle]
    return [rows[i % len(rows)] for i in range(count)]


def _request(row: dict, method: str, rate: float) -> dict:
    documents = [f"Document [{i}](Title: {c['title']}) {c['text']}" for i, c in enumerate(row["ctxs"], 1)]
    return {"method": method, "documents": documents, "question": row["question"], "budget": {"rate": rate}}


def _matmul_rate(device, dtype) -> float:  # noqa: ANN001
    """Measured dense matmul FLOP/s (median of repeats) on ``device``."""
    import torch

    size = 8192 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = []
    for _ in range(12 if device.type == "cuda" else 4):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        (a @ b).sum().item() if device.type == "cpu" else a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times[2:])


def _build_scorer(args: argparse.Namespace, device, saved_copy: str | None):  # noqa: ANN001, ANN202
    """The scorer, and the model folder llmlingua gets (``saved_copy``: the random weights saved there first)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from ctxcompress.engines.device import scoring_dtype
    from ctxcompress.engines.options import EngineOptions
    from ctxcompress.engines.scorer import CausalLMScorer
    from ctxcompress.models import default_registry

    model_dir = args.model_dir or default_registry().resolve("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dtype = scoring_dtype(device)
    if args.random_weights:
        torch.manual_seed(0)
        config = AutoConfig.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
    model = model.to(device).eval()
    if args.random_weights and saved_copy:  # before the scorer fuses (re-points) the weights
        model.save_pretrained(saved_copy)
        tokenizer.save_pretrained(saved_copy)
        model_dir = saved_copy
    options = EngineOptions(
        max_pass_tokens=args.max_pass_tokens,
        decoder=args.decoder,
        compile=args.compile,
        kernels=args.kernels,
        graphs=args.graphs,
    )
    scorer = CausalLMScorer(model, tokenizer, **options.scorer_arguments())
    return scorer, model_dir


def _pool_options(args: argparse.Namespace):  # noqa: ANN202
    """Engine options of the bench's pools: no chunk cache (the runs cycle through a few hundred rows, so a
    cache would serve repeated documents and measure the cache instead of the engine)."""
    from ctxcompress.engines.options import EngineOptions

    return EngineOptions(chunk_cache_mb=0, encoder_dtype=args.encoder_dtype)


def anchor_mode(method: str) -> str:
    """llmlingua 0.2.2's mode beside ``method``: its own for ``llmlingua``, else LongLLMLingua (its question-aware
    mode, the anchor of every question-aware method)."""
    return "llmlingua" if method == "llmlingua" else "longllmlingua"


def _run_anchor(args: argparse.Namespace, model_dir: str, requests: list[dict], device: str, out: Path) -> dict:
    req_path = out / "anchor_requests.jsonl"
    res_path = out / "anchor_results.jsonl"
    with open(req_path, "w", encoding="utf-8") as handle:
        for i, request in enumerate(requests):
            handle.write(
                json.dumps(
                    {"id": str(i), **{k: request[k] for k in ("documents", "question", "budget")}, "instruction": None}
                )
                + "\n"
            )
    started = time.perf_counter()
    done = subprocess.run(
        [
            args.anchor_python,
            str(ANCHOR_SCRIPT),
            "--model-dir",
            model_dir,
            "--device",
            device,
            "--mode",
            anchor_mode(args.method),
            "--input",
            str(req_path),
            "--output",
            str(res_path),
        ],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": done.stderr[-3000:]}
    results = [json.loads(line) for line in res_path.read_text().splitlines()]
    latencies = [r["latency_ms"] for r in results if not r.get("error")]
    errors = [r["error"] for r in results if r.get("error")]
    if not latencies:
        return {"error": errors[:1]}
    return {
        "prompts": len(latencies),
        "errors": len(errors),
        "latency_ms_p50": statistics.median(latencies),
        "latency_ms_p90": sorted(latencies)[int(0.9 * (len(latencies) - 1))],
        "prompts_per_s": 1000 * len(latencies) / sum(latencies),
        "compressed_tokens_mean": statistics.mean(r["compressed_tokens"] for r in results if not r.get("error")),
        "wall_s_including_load": round(wall, 2),
    }


def _set_threads(args: argparse.Namespace, device) -> None:  # noqa: ANN001
    """torch's CPU threads: ``--threads``, else 1 on CUDA (as every GPU worker of ``serve``), else torch's own."""
    import torch

    if args.threads or device.type == "cuda":
        torch.set_num_threads(args.threads or 1)


def run(args: argparse.Namespace) -> int:
    import torch

    from ctxcompress import Compressor
    from ctxcompress.engines.device import resolve_device, scoring_dtype
    from ctxcompress.pool import ModelPool

    device = resolve_device(args.device)
    _set_threads(args, device)
    if args.gpus > 1:
        if device.type != "cuda" or torch.cuda.device_count() < args.gpus:
            raise SystemExit(f"--gpus {args.gpus}: only {torch.cuda.device_count()} CUDA devices here")
        args.processes = max(args.processes, args.gpus)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    paths = data_paths(args.data)
    # Single requests come after the batch runs' prompts: shapes the engine has not seen (cold, as in service).
    rows = _rows(paths, max(args.limit + args.single_requests, args.anchor_limit))
    requests = [_request(r, args.method, args.rate) for r in rows]
    anchor_copy = tempfile.mkdtemp(prefix="bench-model-") if args.anchor_python and args.random_weights else None
    scorer, model_dir = _build_scorer(args, device, anchor_copy)
    params = scorer.num_parameters
    pool = ModelPool(device=str(device), options=_pool_options(args))
    pool.register("scorer", "smollm2-135m", scorer)
    compressor = Compressor(pool=pool)
    peak_flops = _matmul_rate(device, scoring_dtype(device)) * args.gpus  # the rate of every device used

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    compressor.compress_batch(requests[: min(8, len(requests))])  # warm-up (kernels, allocator)
    if args.processes > 1 and device.type == "cuda":
        torch.cuda.empty_cache()  # the engine processes need the memory the warm-up left cached here
    engines = _EngineProcesses(args, requests[: min(8, len(requests))]) if args.processes > 1 else None
    table = []
    for batch in batch_sizes:
        count = max(batch, min(args.limit, len(requests)))
        count = min(count, len(requests))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        tokens_before = pool.model_tokens()
        sync()
        started = time.perf_counter()
        results = []
        peak_gib = None
        if engines is not None:
            for start in range(0, count, batch):
                results += engines.compress(requests[start : start + batch], args.chunk)
            wall = time.perf_counter() - started
            model_tokens, peak_gib = engines.collect_stats()
        else:
            for start in range(0, count, batch):
                results += _compress(compressor, requests[start : start + batch], args.workers)
            sync()
            wall = time.perf_counter() - started
            model_tokens = pool.model_tokens() - tokens_before
            if device.type == "cuda":
                peak_gib = torch.cuda.max_memory_allocated() / 2**30
        input_tokens = sum(r["origin_tokens"] for r in results)
        flops = 2 * params * model_tokens / wall
        table.append(
            {
                "batch_size": batch,
                "prompts": count,
                "prompts_per_s": count / wall,
                "input_tokens_per_s": input_tokens / wall,
                "model_tokens_per_s": model_tokens / wall,
                "achieved_tflops": flops / 1e12,
                "pct_of_matmul_peak": 100 * flops / peak_flops,
                "budget_error_max": max(abs(r["compressed_tokens"] / r["target_tokens"] - 1) for r in results),
                "peak_gpu_mem_gib": peak_gib,
            }
        )
        print(f"[bench] batch {batch}: {table[-1]['prompts_per_s']:.2f} prompts/s", file=sys.stderr, flush=True)
    for request in requests[: args.single_warmup]:
        compressor.compress(request)
    latencies = []
    captured_before = scorer.graphs.captured if scorer.graphs is not None else 0
    for request in requests[args.limit : args.limit + args.single_requests]:
        sync()
        started = time.perf_counter()
        compressor.compress(request)
        sync()
        latencies.append(1000 * (time.perf_counter() - started))
    single = {
        "latency_ms_p50": statistics.median(latencies),
        "latency_ms_p90": sorted(latencies)[int(0.9 * (len(latencies) - 1))],
        "requests": len(latencies),
        "warmup_requests": args.single_warmup,
        # CUDA graphs recorded while timing these requests (a new shape is recorded on first use)
        "graph_captures": (scorer.graphs.captured if scorer.graphs is not None else 0) - captured_before,
    }
    if engines is not None:
        engines.close()
    device_ceiling = _profile(compressor, requests, out, stacks=args.profile_stacks) if args.profile else None
    if args.cprofile:
        _cprofile(compressor, requests, out)
    anchor = None
    if args.anchor_python:
        anchor = _run_anchor(args, model_dir, requests[: args.anchor_limit], device.type, out)
    best = max(table, key=lambda r: r["prompts_per_s"])
    report = {
        "what": f"{args.method} at rate {args.rate} on NQ 20-doc prompts",
        "method": args.method,
        "weights": "random-initialised (real SmolLM2-135M config and tokenizer)"
        if args.random_weights
        else f"from {args.model_dir}"
        if args.model_dir
        else "real SmolLM2-135M-Instruct weights",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "dtype": str(scoring_dtype(device)),
        "torch_compile": bool(args.compile),
        "kernels": scorer.decoder.kernels,
        "cuda_graphs": scorer.graphs is not None,
        "workers": args.workers,
        "processes": args.processes,
        "chunk": args.chunk if args.processes > 1 else None,
        "gpus": args.gpus,
        "decoder": scorer.decoder.name,
        "encoder_dtype": _pool_options(args).encoder_dtype_name(device.type),
        "parameters": params,
        "measured_matmul_tflops": peak_flops / 1e12,
        "ctxcompress": table,
        "single_request": single,
        "device_ceiling": device_ceiling,
        "llmlingua_0_2_2": anchor,
        "speedup_best_batch_vs_llmlingua": (best["prompts_per_s"] / anchor["prompts_per_s"])
        if anchor and "prompts_per_s" in anchor
        else None,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "command": " ".join(["ctxcompress bench", *sys.argv[2:]]) if sys.argv[1:2] == ["bench"] else " ".join(sys.argv),
    }
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    md = _markdown(report)
    (out / "bench.md").write_text(md)
    print(md)
    return 0


def _counts(results: list) -> list[dict]:  # noqa: ANN001
    return [
        {"origin_tokens": r.origin_tokens, "compressed_tokens": r.compressed_tokens, "target_tokens": r.target_tokens}
        for r in results
    ]


def _compress(compressor, requests: list[dict], workers: int) -> list[dict]:  # noqa: ANN001
    """``compress_batch`` of ``requests``, split into ``workers`` slices run by concurrent threads."""
    if workers <= 1 or len(requests) < 2 * workers:
        return _counts(compressor.compress_batch(requests))
    from concurrent.futures import ThreadPoolExecutor

    size = -(-len(requests) // workers)
    slices = [requests[i : i + size] for i in range(0, len(requests), size)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [result for part in pool.map(compressor.compress_batch, slices) for result in _counts(part)]


def _engine_process(args: argparse.Namespace, warmup: list[dict], conn, index: int = 0) -> None:  # noqa: ANN001
    """One engine process: its own scorer (same seed → same random weights) and Compressor; serves slices.
    Process ``index`` runs on ``cuda:index mod --gpus``."""
    import torch

    from ctxcompress import Compressor
    from ctxcompress.engines.device import resolve_device
    from ctxcompress.pool import ModelPool

    device = resolve_device(args.device)
    _set_threads(args, device)
    if device.type == "cuda":
        device = torch.device("cuda", index % args.gpus)
        torch.cuda.set_device(device)
        # A share of the GPU per process: past it, this process's allocator frees its own cached blocks and the
        # scorer splits the batch, instead of one process starving another (6 processes OOMed at batch 512).
        per_device = -(-args.processes // args.gpus)
        torch.cuda.set_per_process_memory_fraction(ENGINE_MEMORY_SHARE / per_device, device)
    scorer, _ = _build_scorer(args, device, None)
    pool = ModelPool(device=str(device), options=_pool_options(args))
    pool.register("scorer", "smollm2-135m", scorer)
    compressor = Compressor(pool=pool)
    compressor.compress_batch(warmup)
    tokens_reported = pool.model_tokens()
    conn.send("ready")
    while (message := conn.recv()) is not None:
        if message == "stats":
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
            conn.send((pool.model_tokens() - tokens_reported, peak))
            tokens_reported = pool.model_tokens()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            continue
        try:
            results = _counts(compressor.compress_batch(message))
            if device.type == "cuda":
                torch.cuda.synchronize()
        except Exception as exc:  # reported to the parent, which stops the run with it; the process stays up
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            continue
        conn.send(results)


class _EngineProcesses:
    """``--processes N``: N engine processes (over ``--gpus`` devices), each taking a slice of every batch."""

    def __init__(self, args: argparse.Namespace, warmup: list[dict]) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conns, self._procs = [], []
        for index in range(args.processes):
            parent, child = context.Pipe()
            proc = context.Process(target=_engine_process, args=(args, warmup, child, index), daemon=True)
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)
        for conn in self._conns:
            if conn.recv() != "ready":
                raise RuntimeError("engine process failed to start")
        self.collect_stats()  # reset counters after warm-up

    def compress(self, requests: list[dict], chunk: int = 0) -> list[dict]:
        """Every request's counts, in order. ``chunk`` 0: one equal slice per process, sent at once; else chunks
        of ``chunk`` requests, each to the next process that is free."""
        from multiprocessing.connection import wait

        size = chunk or -(-len(requests) // len(self._conns))
        pending = [requests[i : i + size] for i in range(0, len(requests), size)]
        replies: list[list[dict] | None] = [None] * len(pending)
        working: dict = {}  # connection -> index of the chunk it has
        next_chunk = 0
        for conn in self._conns:
            if next_chunk < len(pending):
                conn.send(pending[next_chunk])
                working[conn] = next_chunk
                next_chunk += 1
        while working:
            for conn in wait(list(working)):
                reply = conn.recv()
                if isinstance(reply, tuple):  # ("error", message) in place of the results
                    raise RuntimeError(f"engine process failed: {reply[1]}")
                replies[working.pop(conn)] = reply
                if next_chunk < len(pending):
                    conn.send(pending[next_chunk])
                    working[conn] = next_chunk
                    next_chunk += 1
        return [result for reply in replies if reply is not None for result in reply]

    def collect_stats(self) -> tuple[int, float | None]:
        """Model tokens since the last call, summed; peak device memory summed over processes (GiB)."""
        tokens, peaks = 0, []
        for conn in self._conns:
            conn.send("stats")
            done, peak = conn.recv()
            tokens += done
            peaks.append(peak)
        return tokens, (sum(peaks) if all(p is not None for p in peaks) else None)

    def close(self) -> None:
        for conn in self._conns:
            conn.send(None)
        for proc in self._procs:
            proc.join(timeout=30)


def _cprofile(compressor, requests: list[dict], out: Path) -> None:  # noqa: ANN001
    """cProfile of one batch of 64 requests: where the host's time goes."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    compressor.compress_batch(requests[:64])
    profiler.disable()
    for key in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(key).print_stats(45)
        (out / f"cprofile_batch64_{key}.txt").write_text(text.getvalue())


_DEVICE_TOTAL = re.compile(r"Self (?:CUDA|device) time total: ([0-9.]+)(us|ms|s)\b")


def device_time_ms(table: str) -> float | None:
    """The device's kernel time in a torch.profiler table (its "Self CUDA time total" line), in ms; None without."""
    found = _DEVICE_TOTAL.search(table)
    if found is None:
        return None
    return float(found[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[found[2]]


def _profile(compressor, requests: list[dict], out: Path, *, stacks: bool = False) -> dict | None:  # noqa: ANN001
    """torch.profiler operator tables (self CPU and device time) for a single request and a batch of 64; on CUDA,
    the batch's kernel time per prompt: what one GPU could do if the host never kept it waiting. ``stacks``: the
    batch once more, its operators grouped by the five innermost Python frames that launched them (which line of
    ctxcompress spends the device's time) and by their input shapes."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if compressor.pool.device.type == "cuda" else [])
    ceiling = None
    for name, batch in (("single", requests[:1]), ("batch64", requests[:64])):
        with profile(activities=activities) as prof:
            compressor.compress_batch(batch)
            if compressor.pool.device.type == "cuda":
                torch.cuda.synchronize()
        for key in ("self_cpu_time_total", "self_device_time_total"):
            try:
                table = prof.key_averages().table(sort_by=key, row_limit=25)
            except Exception as exc:  # noqa: BLE001 - a missing device column is not fatal
                table = str(exc)
            (out / f"profile_{name}_{key}.txt").write_text(table)
        device_ms = device_time_ms(table)  # the same total line in either table
        if name == "batch64" and device_ms:
            per_prompt = device_ms / len(batch)
            ceiling = {"prompts": len(batch), "device_ms_per_prompt": per_prompt, "prompts_per_s": 1e3 / per_prompt}
    if stacks:
        batch = requests[:64]
        with profile(activities=activities, with_stack=True, record_shapes=True) as prof:
            compressor.compress_batch(batch)
            if compressor.pool.device.type == "cuda":
                torch.cuda.synchronize()
        on_device = compressor.pool.device.type == "cuda"
        (out / "profile_batch64_stacks.txt").write_text(_time_by_caller(prof.events(), on_device=on_device))
        # where torch's Python tracer records no frames (the lent GPU's image), the operators' input shapes still
        # tell which tensors the time went to
        by_shape = prof.key_averages(group_by_input_shape=True)
        sort = "self_device_time_total" if on_device else "self_cpu_time_total"
        (out / "profile_batch64_shapes.txt").write_text(
            by_shape.table(sort_by=sort, row_limit=40, max_name_column_width=40, max_shapes_column_width=120)
        )
    return ceiling


def _time_by_caller(events, *, on_device: bool, rows: int = 40) -> str:  # noqa: ANN001
    """Operators' self time (device time on CUDA, else CPU), summed per operator and the innermost two ctxcompress
    lines that called it (found by walking each event's parents in a ``with_stack`` trace)."""
    totals: dict[tuple[str, str], list[float]] = {}
    for event in events:
        if ".py(" in event.name:  # a Python frame, not an operator
            continue
        spent = event.self_device_time_total if on_device else event.self_cpu_time_total
        if spent <= 0:
            continue
        callers, parent = [], event.cpu_parent
        while parent is not None and len(callers) < 2:
            if "ctxcompress/" in parent.name or "ctxcompress_eval/" in parent.name:
                callers.append(parent.name.split("ctxcompress/")[-1])
            parent = parent.cpu_parent
        entry = totals.setdefault((event.name, " < ".join(callers) or "-"), [0.0, 0])
        entry[0] += spent
        entry[1] += 1
    grand = sum(t for t, _ in totals.values()) or 1.0
    lines = [f"{'ms':>9} {'%':>5} {'calls':>6}  operator  <-  ctxcompress callers (innermost first)"]
    for (name, where), (spent, calls) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:rows]:
        lines.append(f"{spent / 1e3:9.2f} {100 * spent / grand:5.1f} {calls:6d}  {name[:60]}  <-  {where}")
    lines.append(f"{grand / 1e3:9.2f} total ({'device' if on_device else 'CPU'} self time)")
    return "\n".join(lines) + "\n"


def _markdown(report: dict) -> str:
    lines = [
        f"# Benchmark: {report['what']}",
        "",
        f"Device: {report['device']} ({report['dtype']}, torch threads {report['torch_threads']}, "
        f"decoder {report.get('decoder')}, kernels {report.get('kernels', 'torch')}, "
        f"torch.compile {'on' if report.get('torch_compile') else 'off'}, "
        f"CUDA graphs {'on' if report.get('cuda_graphs') else 'off'}, "
        f"engine processes {report.get('processes', 1)} on {report.get('gpus', 1)} GPU(s)"
        f"{', dealt in chunks of ' + str(report['chunk']) if report.get('chunk') else ''}, "
        f"threads per engine {report.get('workers', 1)}); "
        f"weights: {report['weights']}; measured matmul rate {report['measured_matmul_tflops']:.1f} TFLOP/s.",
        "",
        "| batch | prompts/s | input tok/s | model tok/s | TFLOP/s | % of matmul peak | max budget err | peak GiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["ctxcompress"]:
        mem = f"{row['peak_gpu_mem_gib']:.1f}" if row["peak_gpu_mem_gib"] is not None else "-"
        lines.append(
            f"| {row['batch_size']} | {row['prompts_per_s']:.2f} | {row['input_tokens_per_s']:.0f} | "
            f"{row['model_tokens_per_s']:.0f} | {row['achieved_tflops']:.2f} | {row['pct_of_matmul_peak']:.1f} | "
            f"{row['budget_error_max']:.3f} | {mem} |"
        )
    single = report["single_request"]
    lines += [
        "",
        f"Single request latency: p50 {single['latency_ms_p50']:.1f} ms, "
        f"p90 {single['latency_ms_p90']:.1f} ms ({single['requests']} requests, "
        f"{single.get('graph_captures', 0)} CUDA graphs recorded meanwhile).",
    ]
    ceiling = report.get("device_ceiling")
    if ceiling:
        lines.append(
            f"Device kernel time in one process's batch of {ceiling['prompts']} (torch.profiler): "
            f"{ceiling['device_ms_per_prompt']:.2f} ms per prompt, i.e. {ceiling['prompts_per_s']:.0f} prompts/s "
            "if the GPU never waited for the host."
        )
    anchor = report["llmlingua_0_2_2"]
    if anchor and "prompts_per_s" in anchor:
        lines += [
            f"llmlingua 0.2.2 ({anchor_mode(report['method'])} mode; same model, inputs, device): "
            f"{anchor['prompts_per_s']:.3f} prompts/s, "
            f"p50 {anchor['latency_ms_p50']:.0f} ms over {anchor['prompts']} prompts.",
            f"Speed-up at the best batch size: {report['speedup_best_batch_vs_llmlingua']:.1f}x.",
        ]
    elif anchor:
        lines.append(f"llmlingua 0.2.2 failed: {anchor.get('error')}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="ctxcompress bench", description=__doc__.splitlines()[0])
    configure(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
