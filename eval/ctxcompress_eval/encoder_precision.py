"""Does the sentence encoder's float16 (the CUDA default) keep what float32 keeps? Paired, on NQ 20-document rows.

The same prompts are compressed twice by ``hybrid`` with the real all-MiniLM-L6-v2, once with the encoder in
float32 and once in float16 (``EngineOptions.encoder_dtype``), on one device. Reported per rate: how many
compressed prompts are identical, the answer retention of each (a gold answer string in the prompt) with the
paired difference and its 95% bootstrap interval, and how often the document ranking is the same. On CPU, ``hybrid``
ranks by the encoder alone (its ``signals="auto"``), so every difference the precision makes shows; on CUDA the
encoder is one of three fused signals.

    .venv/bin/python eval/ctxcompress_eval/encoder_precision.py --skip 100 --limit 120 --positions 4 14 \\
        --rates 0.25 0.1 --out eval/results/encoder_fp16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ctxcompress import Compressor
from ctxcompress.engines.options import EngineOptions
from ctxcompress_eval.datasets import load_nq
from ctxcompress_eval.metrics import contains_answer, paired_stats

__all__ = ["main"]

DTYPES = ("float32", "float16")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2].parent / "shared" / "data"))
    parser.add_argument("--skip", type=int, default=100, help="first row (rows 0-99 are the tuning split)")
    parser.add_argument("--limit", type=int, default=120, help="rows per gold position")
    parser.add_argument("--positions", type=int, nargs="+", default=[4, 14])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.25, 0.1])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8, help="prompts per compress_batch call")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    examples = load_nq(Path(args.data_dir), docs=20, positions=args.positions, limit=args.limit, skip=args.skip)
    prompts: dict[str, dict[float, list[str]]] = {}
    rankings: dict[str, list[list[int]]] = {}
    seconds: dict[str, float] = {}
    for dtype in DTYPES:
        # The chunk cache serves the second rate the first rate's vectors (same text, same spans: same values).
        compressor = Compressor(device=args.device, engine_options=EngineOptions(encoder_dtype=dtype))
        started = time.perf_counter()
        prompts[dtype] = {}
        for rate in args.rates:
            out = prompts[dtype][rate] = []
            for start in range(0, len(examples), args.batch):
                batch = examples[start : start + args.batch]
                results = compressor.compress_batch([e.request("hybrid", rate) for e in batch])
                out.extend(r.prompt for r in results)
                if rate == args.rates[0]:
                    rankings.setdefault(dtype, []).extend(r.ranking or [] for r in results)
        seconds[dtype] = time.perf_counter() - started
    order_equal = float(np.mean([a == b for a, b in zip(rankings["float32"], rankings["float16"], strict=True)]))
    top_equal = float(np.mean([a[:1] == b[:1] for a, b in zip(rankings["float32"], rankings["float16"], strict=True)]))
    report: dict[str, object] = {
        "what": "hybrid, all-MiniLM-L6-v2 float16 vs float32, NQ 20-doc",
        "rows": f"{args.skip}-{args.skip + args.limit - 1}",
        "positions": args.positions,
        "prompts_per_rate": len(examples),
        "device": args.device,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "document_ranking_identical": order_equal,
        "top_document_identical": top_equal,
        "rates": {},
    }
    print(
        f"{len(examples)} prompts per rate; document ranking identical {order_equal:.3f}, "
        f"top document identical {top_equal:.3f}; seconds {report['seconds']}"
    )
    print(f"{'rate':>5} {'identical':>9} {'kept fp32':>9} {'kept fp16':>9} {'Δ fp16−fp32 [95% CI]':>26} {'W/L':>6}")
    for rate in args.rates:
        identical = float(
            np.mean([a == b for a, b in zip(prompts["float32"][rate], prompts["float16"][rate], strict=True)])
        )
        pairs = [
            (contains_answer(b, e.answers), contains_answer(a, e.answers))
            for e, a, b in zip(examples, prompts["float32"][rate], prompts["float16"][rate], strict=True)
        ]
        stats = paired_stats(pairs)
        report["rates"][str(rate)] = {"identical_prompts": identical, **stats}  # type: ignore[index]
        ci = stats["ci95"] or [0.0, 0.0]
        print(
            f"{rate:>5} {identical:>9.3f} {stats['reference_retention']:>9.3f} {stats['retention']:>9.3f} "
            f"{stats['diff']:>+9.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] {stats['wins']:>3}/{stats['losses']}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "encoder_precision.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
