"""Host (Python and tokenizer) time per request of a method, by component, on CPU: what a GPU worker spends
outside the device on each request, which bounds REST throughput when one GPU serves several host-bound workers.

The sentence encoder is the real embedded MiniLM; the causal LM is a tiny random Llama (2 layers, width 64) with
SmolLM2's tokenizer, so its compute is negligible while every host step of the LM signals (tokenising, building
rows, reading the probe, assembly) runs as on the GPU. cProfile's own-time per function is grouped into model
compute (torch operators), HF tokenizers, tiktoken (target-token counts), Punkt (sentences), transformers'
Python (module calls: launch overhead on a GPU), ctxcompress, numpy and the rest; cProfile inflates Python-heavy
parts, so read the shares, not the absolute sum.

    .venv/bin/python eval/ctxcompress_eval/host_profile.py --method hybrid --options '{"signals": "all"}' \\
        --out eval/results/host_profile/hybrid_all.json
    .venv/bin/python eval/ctxcompress_eval/host_profile.py --method hybrid --recurring --limit 30 \\
        --out eval/results/host_profile/hybrid_recurring.json
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"

__all__ = ["group_own_time", "main"]


def _group(filename: str, name: str) -> str:
    if filename == "~":  # built-in: the object's method or the function named
        if "tokenizers" in name:
            return "tokenizers (HF, Rust)"
        if "CoreBPE" in name:
            return "tiktoken (target-token counts)"
        if "torch" in name:
            return "model compute (torch operators)"
        return "numpy and builtins" if "numpy" in name else "other built-ins"
    if "site-packages" not in filename and "/ctxcompress/" in filename:
        return "ctxcompress"
    for package, label in (
        ("/punkt/", "punkt (sentence splitting)"),
        ("/transformers/", "transformers (Python)"),
        ("/tokenizers/", "tokenizers (HF, Rust)"),
        ("/tiktoken/", "tiktoken (target-token counts)"),
        ("/torch/", "torch (Python)"),
        ("/numpy/", "numpy and builtins"),
    ):
        if package in filename:
            return label
    return "other Python"


def group_own_time(stats: pstats.Stats) -> dict[str, float]:
    """Own time (s) per component."""
    groups: dict[str, float] = {}
    for (filename, _, name), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = _group(filename, name)
        groups[key] = groups.get(key, 0.0) + own
    return groups


def top_functions(stats: pstats.Stats, n: int) -> list[tuple[str, float]]:
    """The ``n`` ctxcompress functions of most own time (s), as ``module:line(function)``."""
    own = [
        (f"{filename.split('/ctxcompress/', 1)[1]}:{line}({name})", seconds)
        for (filename, line, name), (_, _, seconds, _, _) in stats.stats.items()  # type: ignore[attr-defined]
        if _group(filename, name) == "ctxcompress"
    ]
    return sorted(own, key=lambda item: -item[1])[:n]


def _requests(method: str, options: dict, limit: int) -> list[dict]:
    from ctxcompress_eval.datasets import load_nq

    examples = load_nq(DATA, docs=20, positions=[9], limit=limit)
    body = {"method": method, "budget": {"rate": 0.25}} | ({"options": options} if options else {})
    return [body | {"documents": e.documents, "question": e.question} for e in examples]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="hybrid")
    parser.add_argument("--options", default="{}", help="the request's options (JSON)")
    parser.add_argument("--limit", type=int, default=40, help="requests (the first 3 warm up, unprofiled)")
    parser.add_argument("--recurring", action="store_true", help="requests whose chunks were all seen before")
    parser.add_argument("--top", type=int, default=0, help="also print the N ctxcompress functions of most own time")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # tests.reliability.server
    import torch

    from ctxcompress import Compressor
    from ctxcompress.pool import ModelPool
    from tests.reliability.server import tiny_scorer

    torch.set_num_threads(1)
    pool = ModelPool(device="cpu")
    pool.register("scorer", "smollm2-135m", tiny_scorer(max_pass_tokens=8192))
    compressor = Compressor(pool=pool)
    requests = _requests(args.method, json.loads(args.options), args.limit)
    if args.recurring:  # the same chunks again, each with another row's question: the caches serve the chunks
        for request in requests:
            compressor.compress(request)
        requests = [r | {"question": requests[(i + 1) % len(requests)]["question"]} for i, r in enumerate(requests)]
        unprofiled = []
        for request in requests:
            mark = time.perf_counter()
            compressor.compress(request)
            unprofiled.append((time.perf_counter() - mark) * 1000)
        print(f"recurring chunks, unprofiled: median {statistics.median(unprofiled):.1f} ms per request")
    for request in requests[:3]:
        compressor.compress(request)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for request in requests[3:]:
        compressor.compress(request)
    profiler.disable()
    count = len(requests) - 3
    wall_ms = (time.perf_counter() - started) / count * 1000
    groups = {k: v / count * 1000 for k, v in group_own_time(pstats.Stats(profiler)).items()}
    host_ms = sum(v for k, v in groups.items() if k != "model compute (torch operators)")
    print(f"{args.method} {args.options}: {count} NQ 20-document requests, {wall_ms:.1f} ms each under cProfile")
    print(f"{'component':<36} {'ms/request':>10} {'share of host':>14}")
    for key, ms in sorted(groups.items(), key=lambda kv: -kv[1]):
        share = "" if key.startswith("model compute") else f"{ms / host_ms:.0%}"
        print(f"{key:<36} {ms:>10.2f} {share:>14}")
    print(f"{'host total (all but model compute)':<36} {host_ms:>10.2f}")
    if args.top:
        print(f"\n{'ctxcompress function':<60} {'own ms/request':>14}")
        for name, ms in top_functions(pstats.Stats(profiler), args.top):
            print(f"{name:<60} {ms / count * 1000:>14.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {"method": args.method, "options": json.loads(args.options), "requests": count}
        report["recurring_chunks"] = args.recurring
        report |= {"wall_ms_profiled": round(wall_ms, 2), "host_ms": round(host_ms, 2)}
        report["components_ms"] = {k: round(v, 3) for k, v in groups.items()}
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
