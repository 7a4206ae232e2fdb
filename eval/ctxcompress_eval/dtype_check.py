"""Does bf16 scoring on CPU keep what fp32 keeps? LongLLMLingua on NQ 20-doc prompts, real SmolLM2-135M.

Runs the same prompts with the scorer in fp32 and in bf16 (``CTXCOMPRESS_CPU_DTYPE``) and reports, per dtype,
answer retention (an answer string survives in the compressed prompt), gold document in the top 3 of the
ranking, and budget error; plus the share of prompts whose outputs are identical, and seconds per prompt.

    python eval/ctxcompress_eval/dtype_check.py --limit 30 --out eval/results/cpu_bf16_retention
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nq_multidoc" / "20docs" / "gold_at_9.jsonl.gz"


def _one_dtype(dtype: str, limit: int, rate: float, threads: int) -> dict:
    """Child process body: compress ``limit`` prompts with the scorer in ``dtype``; JSON to stdout."""
    import torch

    from ctxcompress import Compressor

    torch.set_num_threads(threads)
    with gzip.open(DATA, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(limit), handle, strict=False)]
    compressor = Compressor(device="cpu")
    out = []
    for row in rows:
        documents = [f"Document [{i}](Title: {c['title']}) {c['text']}" for i, c in enumerate(row["ctxs"], 1)]
        gold = next((i for i, c in enumerate(row["ctxs"]) if c.get("isgold") or c.get("is_gold")), None)
        started = time.perf_counter()
        result = compressor.compress(
            {"method": "longllmlingua", "documents": documents, "question": row["question"], "budget": {"rate": rate}}
        )
        out.append(
            {
                "seconds": time.perf_counter() - started,
                "prompt": result.prompt,
                "answer_kept": any(a.lower() in result.prompt.lower() for a in row["answers"]),
                "gold_top3": gold is not None and gold in (result.ranking or [])[:3],
                "budget_error": abs(result.compressed_tokens / result.target_tokens - 1),
            }
        )
    return {"dtype": dtype, "rows": out}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--rate", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="dtype_check_out")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_one_dtype(args.child, args.limit, args.rate, args.threads)))
        return 0
    runs = {}
    for dtype in ("float32", "bfloat16"):
        env = {**os.environ, "CTXCOMPRESS_CPU_DTYPE": dtype}
        argv = [sys.executable, __file__, "--child", dtype, "--limit", str(args.limit), "--rate", str(args.rate)]
        done = subprocess.run([*argv, "--threads", str(args.threads)], env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        runs[dtype] = json.loads(done.stdout.strip().splitlines()[-1])["rows"]
    summary = {
        dtype: {
            "prompts": len(rows),
            "answer_retention": sum(r["answer_kept"] for r in rows) / len(rows),
            "gold_in_top3": sum(r["gold_top3"] for r in rows) / len(rows),
            "budget_error_max": max(r["budget_error"] for r in rows),
            "seconds_per_prompt_p50": statistics.median(r["seconds"] for r in rows),
        }
        for dtype, rows in runs.items()
    }
    pairs = list(zip(runs["float32"], runs["bfloat16"], strict=True))
    summary["identical_outputs"] = sum(a["prompt"] == b["prompt"] for a, b in pairs) / len(pairs)
    summary["command"] = " ".join(["python", *sys.argv])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dtype_check.json").write_text(json.dumps(summary, indent=2))
    lines = [
        "| dtype | answer retention | gold in top 3 | max budget err | s/prompt p50 |",
        "|---|---:|---:|---:|---:|",
    ]
    for dtype in ("float32", "bfloat16"):
        row = summary[dtype]
        lines.append(
            f"| {dtype} | {row['answer_retention']:.3f} | {row['gold_in_top3']:.3f} | "
            f"{row['budget_error_max']:.3f} | {row['seconds_per_prompt_p50']:.2f} |"
        )
    lines.append(f"\nIdentical outputs: {summary['identical_outputs']:.2f} of {len(pairs)} prompts.")
    (out / "dtype_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
