"""The budget fill's time per request (`keep_best_units`, hybrid's last host step) on recorded inputs.

Runs `hybrid` at rate 0.25 on the kit's prompts (CPU, 1-layer random models from the kit's configs and tokenizers:
the fill's inputs depend on the scores' order, not on their quality), records each request's fill inputs, then
times the fill on them (median of ``--repeats`` per request, each request's count memo cleared first) and counts
its tiktoken calls. Prints one line per request and the median.

    .venv/bin/python eval/ctxcompress_eval/fill_timing.py --kit .carry/prof
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from ctxcompress_eval.random_models import use_random_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kit", type=Path, required=True, help="configs, tokenizers and prompts.jsonl")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    use_random_models(args.kit, layers=1)

    import ctxcompress.methods.hybrid as hybrid
    from ctxcompress import Compressor
    from ctxcompress.engines.options import EngineOptions

    recorded = []
    fill = hybrid.keep_best_units

    def record(prepared, docs, **kwargs):  # noqa: ANN001, ANN202
        recorded.append((prepared, docs, kwargs))
        return fill(prepared, docs, **kwargs)

    hybrid.keep_best_units = record
    prompts = [json.loads(line) for line in (args.kit / "prompts.jsonl").read_text().splitlines()]
    requests = [{**p, "method": "hybrid", "budget": {"rate": 0.25}} for p in prompts]
    Compressor(device="cpu", engine_options=EngineOptions(chunk_cache_mb=0)).compress_batch(requests)

    medians = []
    for prepared, docs, kwargs in recorded:
        times = []
        for _ in range(args.repeats):
            prepared._counted.clear()
            started = time.perf_counter()
            fill(prepared, docs, **kwargs)
            times.append(1e3 * (time.perf_counter() - started))
        calls = []
        count = prepared.target.count
        prepared.target.count = lambda text, count=count, calls=calls: calls.append(text) or count(text)
        prepared._counted.clear()
        fill(prepared, docs, **kwargs)
        del prepared.target.count
        medians.append(statistics.median(times))
        print(f"fill {medians[-1]:.2f} ms, {len(calls)} tiktoken calls of {sum(map(len, calls))} characters")
    print(f"median over {len(medians)} requests: {statistics.median(medians):.2f} ms")


if __name__ == "__main__":
    main()
