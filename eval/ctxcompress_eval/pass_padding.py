"""How much of the `hybrid` passes' token positions are padding: the cap alone vs the length-banded plan.

Runs `hybrid` (both LM signals) over ``--limit`` NQ requests in one batch on the CPU with 1-layer random models
built from the kit's configs and tokenizers (token counts depend on the tokenizers, not the weights), at the CUDA
pass cap, records the lengths every attention-probe and encoder-window pass plan is made from, and prices them
with ``plan_batches`` both ways: passes, padded token positions and the padding's share. Prints a table and writes
JSON. Padded positions are what the decoder's matmuls, norms and MLPs run over on the GPU.

    python eval/ctxcompress_eval/pass_padding.py --kit .carry/prof --data .carry/nq/gold_at_0.jsonl.gz --limit 64
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ctxcompress_eval.bench import _request, _rows
from ctxcompress_eval.random_models import use_random_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kit", type=Path, required=True, help="configs + tokenizers (the device kit's prof folder)")
    parser.add_argument("--data", type=Path, nargs="+", required=True)
    parser.add_argument("--limit", type=int, default=64, help="requests in the one batch")
    parser.add_argument("--out", type=Path, default=Path("/tmp/pass_padding.json"))
    args = parser.parse_args()
    use_random_models(args.kit, layers=1)

    import ctxcompress.engines.attention as attention
    import ctxcompress.engines.encoder as encoder
    from ctxcompress import Compressor
    from ctxcompress.engines.batching import PADDING_TOLERANCE, plan_batches
    from ctxcompress.engines.options import EngineOptions

    cap = EngineOptions().pass_tokens("cuda")
    recorded: dict[str, list[list[int]]] = {"attention probe": [], "encoder windows": []}
    for name, module in (("attention probe", attention), ("encoder windows", encoder)):

        def record(lengths, _name=name, **kwargs):  # noqa: ANN001, ANN202
            recorded[_name].append(list(lengths))
            return plan_batches(lengths, **kwargs)

        module.plan_batches = record
    requests = [_request(row, "hybrid", 0.25) for row in _rows(args.data, args.limit)]
    for request in requests:
        request.setdefault("options", {})["signals"] = "all"
    compressor = Compressor(device="cpu", engine_options=EngineOptions(chunk_cache_mb=0, max_pass_tokens=cap))
    compressor.compress_batch(requests)

    report = {"requests": len(requests), "max_pass_tokens": cap, "padding_tolerance": PADDING_TOLERANCE, "passes": {}}
    print(f"{len(requests)} requests in one batch, pass cap {cap} tokens")
    print("| passes of | rows | real tokens | plan | passes | padded positions | padding |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for name, calls in recorded.items():
        real = sum(n for lengths in calls for n in lengths)
        rows = sum(len(lengths) for lengths in calls)
        report["passes"][name] = {}
        for plan, tolerance in (("cap alone", None), ("length-banded", PADDING_TOLERANCE)):
            passes, padded = _price(calls, cap, tolerance)
            report["passes"][name][plan] = {
                "rows": rows,
                "real_tokens": real,
                "passes": passes,
                "padded_positions": padded,
            }
            print(f"| {name} | {rows} | {real} | {plan} | {passes} | {padded} | {100 * (1 - real / padded):.1f}% |")
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


def _price(calls: list[list[int]], cap: int, tolerance: float | None) -> tuple[int, int]:
    """Passes and padded token positions of every recorded plan, planned with ``tolerance``."""
    from ctxcompress.engines.batching import plan_batches

    passes = padded = 0
    for lengths in calls:
        for batch in plan_batches(lengths, max_padded_tokens=cap, padding_tolerance=tolerance):
            passes += 1
            padded += max(lengths[i] for i in batch) * len(batch)
    return passes, padded


if __name__ == "__main__":
    main()
