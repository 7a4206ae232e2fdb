"""Does the start-up profile batch reserve a GPU worker's memory peak? One process, one GPU, random weights.

Per configuration (each in a fresh process, since the allocator's settings are read when CUDA starts): a small
warm-up request, the profile batch at the serving limits (``ctxcompress/serving/profile_batch.py``), then
``--batches`` batches of real NQ 20-document requests of random sizes (1 to the serving limits, as open batches
form under load). It records the caching allocator's reserved bytes and the peak of allocated bytes after the
profile batch and over the traffic: traffic that allocates more than the profile batch did means the profile
batch is not representative; reserved growth beyond the allocated peak is fragmentation.

There:  python3 eval/device/memory_profile.py --kit .carry/prof --data .carry/nq/gold_at_9.jsonl.gz --out $OUT/memory
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {  # name: (PYTORCH_CUDA_ALLOC_CONF, EngineOptions.graphs)
    "default": ("", "auto"),
    "expandable": ("expandable_segments:True", "auto"),
    "expandable-no-graphs": ("expandable_segments:True", "off"),
}


def _requests(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return [
        {
            "method": "hybrid",
            "documents": [f"Document [{i}](Title: {c['title']}) {c['text']}" for i, c in enumerate(row["ctxs"], 1)],
            "question": row["question"],
            "budget": {"rate": 0.25},
        }
        for row in rows
    ]


def measure(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(ROOT / "eval"))
    from ctxcompress_eval.random_models import build_random_models

    os.environ["CTXCOMPRESS_MODELS"] = json.dumps(build_random_models(args.kit, Path("/tmp/ctxc-random")))
    import torch

    from ctxcompress import Compressor
    from ctxcompress.engines.options import EngineOptions
    from ctxcompress.serving.profile_batch import profile_batch

    options = EngineOptions(chunk_cache_mb=0, graphs=CONFIGS[args.one][1])
    compressor = Compressor(device=args.device, engine_options=options)
    cuda = args.device.startswith("cuda")
    requests = _requests(args.data)
    compressor.compress(requests[0])
    gib = 2.0**30

    def snapshot() -> dict:
        if not cuda:  # a smoke run of the script on CPU
            return {}
        torch.cuda.synchronize()
        return {
            "reserved_gib": round(torch.cuda.memory_reserved() / gib, 2),
            "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / gib, 2),
        }

    def reset_peak() -> None:
        if cuda:
            torch.cuda.reset_peak_memory_stats()

    def count(request: dict) -> int:
        return compressor.prepare(request).origin_tokens

    after_warmup = snapshot()
    reset_peak()
    largest = profile_batch("hybrid", requests=args.limit_requests, tokens=args.limit_tokens, count_tokens=count)
    compressor.compress_batch(largest)
    after_profile = snapshot()
    reset_peak()
    rng = random.Random(0)
    tokens = {id(r): count(r) for r in requests}
    reserved, batches = [], []
    for _ in range(args.batches):
        size = rng.choice([1, 2, 4, 8, 16, 32, rng.randint(1, 32)])
        size = min(size, args.limit_requests)
        batch, total = [], 0
        for request in rng.sample(requests, size):
            if total + tokens[id(request)] > args.limit_tokens:
                break
            batch.append(request)
            total += tokens[id(request)]
        reset_peak()
        compressor.compress_batch(batch)
        reserved.append(torch.cuda.memory_reserved() / gib if cuda else 0.0)
        peak = torch.cuda.max_memory_allocated() / gib if cuda else 0.0
        longest = max(tokens[id(r)] for r in batch)
        batches.append({"peak_allocated_gib": round(peak, 2), "requests": len(batch), "tokens": total})
        batches[-1]["longest"] = longest
    return {
        "profile_batch": {"requests": len(largest), "tokens": sum(count(r) for r in largest)},
        "after_warmup": after_warmup,
        "after_profile_batch": after_profile,
        "traffic": {
            "reserved_gib": round(reserved[-1], 2),
            "peak_allocated_gib": max(b["peak_allocated_gib"] for b in batches),
            "batches": args.batches,
            "reserved_max_gib": round(max(reserved), 2),
        },
        "largest_peaks": sorted(batches, key=lambda b: -b["peak_allocated_gib"])[:6],
        "reserved_gib_every_10_batches": [round(r, 2) for r in reserved[::10]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, default=Path(".carry/prof"))
    parser.add_argument("--data", type=Path, default=Path(".carry/nq/gold_at_9.jsonl.gz"))
    parser.add_argument("--batches", type=int, default=120)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--limit-requests", type=int, default=32, help="ServingOptions.max_batch_requests")
    parser.add_argument("--limit-tokens", type=int, default=65_536, help="ServingOptions.max_batch_tokens")
    parser.add_argument("--out", type=Path, default=Path("memory"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.configs.split(","):
        env = os.environ | {"PYTORCH_CUDA_ALLOC_CONF": CONFIGS[name][0]}
        command = [sys.executable, __file__, "--one", name, "--kit", str(args.kit), "--data", str(args.data)]
        command += ["--batches", str(args.batches), "--device", args.device]
        command += ["--limit-requests", str(args.limit_requests), "--limit-tokens", str(args.limit_tokens)]
        output = subprocess.run(command, env=env, capture_output=True, text=True)
        lines = [line for line in output.stdout.splitlines() if line.startswith("{")]
        results[name] = json.loads(lines[-1]) if lines else {"error": output.stderr[-2000:]}
        print(name, json.dumps(results[name]), flush=True)
    (args.out / "memory.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
