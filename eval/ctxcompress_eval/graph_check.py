"""Does an engine setting change outputs, and what does it save? Single LongLLMLingua requests, A vs B.

``--compare graphs`` (default): CUDA graphs off vs on; ``--compare kernels``: torch vs Triton element-wise and
NLL kernels (graphs as ``--graphs`` says). For each setting, one scorer (same seed, so the same random weights)
compresses the same NQ 20-doc prompts one by one, twice: the first pass records each new shape's graph, the
second replays them. Reports per setting the p50/p90 latency of both passes and the graphs recorded, and across
settings the share of identical prompts and rankings, the word-level similarity of the prompts that differ, and
the budget error with the second setting.

    python eval/ctxcompress_eval/graph_check.py --device cuda --random-weights --out graph_check.json
    python eval/ctxcompress_eval/graph_check.py --device cuda --random-weights --compare kernels --out k.json
"""

from __future__ import annotations

import argparse
import difflib
import statistics
import time

from ctxcompress_eval import bench

# The engine settings compared (bench's option names), each with its two values: reference first.
_SETTINGS = {"graphs": ("off", "on"), "kernels": ("torch", "triton")}


def _timed_pass(compressor, requests: list[dict], sync) -> tuple[list, list[float]]:  # noqa: ANN001
    results, latencies = [], []
    for request in requests:
        sync()
        started = time.perf_counter()
        results.append(compressor.compress(request))
        sync()
        latencies.append(1000 * (time.perf_counter() - started))
    return results, latencies


def run(args: argparse.Namespace) -> dict:
    import torch

    from ctxcompress import Compressor
    from ctxcompress.engines.device import resolve_device
    from ctxcompress.pool import ModelPool

    device = resolve_device(args.device)
    paths = bench.data_paths(args.data)
    rows = bench._rows(paths, args.warmup + args.requests)
    requests = [bench._request(r, "longllmlingua", args.rate) for r in rows]
    timed = requests[args.warmup :]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    name, settings = args.compare, _SETTINGS[args.compare]
    report: dict = {"requests": len(timed), "rate": args.rate, "device": str(device), "compared": name}
    outputs = {}
    for value in settings:
        setattr(args, name, value)
        scorer, _ = bench._build_scorer(args, device, None)
        pool = ModelPool(device=str(device))
        pool.register("scorer", "smollm2-135m", scorer)
        compressor = Compressor(pool=pool)
        compressor.compress_batch(requests[: args.warmup])  # kernels and allocator, not these shapes
        for phase in ("first", "second"):
            outputs[value], latencies = _timed_pass(compressor, timed, sync)
            report[f"{name}_{value}_{phase}_p50_ms"] = statistics.median(latencies)
            report[f"{name}_{value}_{phase}_p90_ms"] = sorted(latencies)[int(0.9 * (len(latencies) - 1))]
        report[f"{name}_{value}_recorded"] = scorer.graphs.captured if scorer.graphs is not None else 0
        del compressor, pool, scorer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    pairs = list(zip(outputs[settings[0]], outputs[settings[1]], strict=True))
    ratios = [difflib.SequenceMatcher(a=a.prompt.split(), b=b.prompt.split(), autojunk=False).ratio() for a, b in pairs]
    report["identical_prompts"] = sum(a.prompt == b.prompt for a, b in pairs)
    report["same_ranking"] = sum(a.ranking == b.ranking for a, b in pairs)
    report["word_similarity_min"] = min(ratios)
    report[f"budget_error_max_{name}_{settings[1]}"] = max(
        abs(r.compressed_tokens / r.target_tokens - 1) for r in outputs[settings[1]]
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.configure(parser)
    parser.add_argument("--requests", type=int, default=32, help="single requests timed per pass")
    parser.add_argument("--warmup", type=int, default=8, help="prompts compressed once, untimed, per setting")
    parser.add_argument("--compare", default="graphs", choices=sorted(_SETTINGS), help="the engine setting compared")
    parser.set_defaults(out="graph_check.json")
    args = parser.parse_args(argv)
    bench.emit_report(run(args), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
