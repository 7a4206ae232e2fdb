"""Where a batch-1 request spends its time on the GPU: per method, p50 latency, the method's own stage timings,
and the top host (cProfile) and device (torch.profiler) costs of one request.

Random weights (real SmolLM2-135M and all-MiniLM-L6-v2 configs and tokenizers): speed does not depend on weight
values, so no weights need to travel; ``--configured-models`` uses the registry's models instead (real weights,
after ``eval/device/setup.sh``). Prompts: NQ 20-document rows written by ``--write-prompts`` here.

Here:   python eval/device/profile_latency.py --write-prompts .carry/prof/prompts.jsonl  (and copy the configs)
There:  python3 eval/device/profile_latency.py --kit .carry/prof --out $OUT/profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import statistics
import sys
import time
from pathlib import Path

METHODS = ["longllmlingua", "cpc", "attention", "hybrid"]


def write_prompts(path: Path, count: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ctxcompress_eval.datasets import load_nq

    data = Path(__file__).resolve().parents[3] / "shared" / "data"
    examples = load_nq(data, docs=20, positions=[4], limit=count, skip=100)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for e in examples:
            f.write(json.dumps({"documents": e.documents, "question": e.question, "instruction": e.instruction}) + "\n")


def profile(
    kit: Path,
    out: Path,
    repeats: int,
    methods: list[str],
    device: str,
    configured: bool,
    chunk_cache_mb: int,
    encoder_graphs: str = "auto",
    threads: int | None = None,
    new_units: bool = False,
) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ctxcompress_eval.bench import device_time_ms

    if not configured:
        from ctxcompress_eval.random_models import use_random_models

        use_random_models(kit)
    import torch

    from ctxcompress import Compressor
    from ctxcompress.engines.options import EngineOptions
    from ctxcompress.methods._units import sentence_unit_cache

    if threads or device.startswith("cuda"):
        torch.set_num_threads(threads or 1)  # as serve's GPU workers (Settings.torch_threads)
    prompts = [json.loads(line) for line in (kit / "prompts.jsonl").open()]
    options = EngineOptions(chunk_cache_mb=chunk_cache_mb, encoder_graphs=encoder_graphs)
    compressor = Compressor(device=device, engine_options=options)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, dict] = {}
    for method in methods:
        requests = [{**p, "method": method, "budget": {"rate": 0.25}} for p in prompts]
        for request in requests[:2]:
            compressor.compress(request)
        latencies, stages = [], {}
        for _ in range(repeats):
            for request in requests:
                if new_units:  # sentence splitting as for chunks never seen (the unit cache is separate)
                    sentence_unit_cache().clear()
                sync()
                started = time.perf_counter()
                result = compressor.compress(request)
                latencies.append((time.perf_counter() - started) * 1000)
                for key, value in (result.timings_ms or {}).items():
                    stages.setdefault(key, []).append(value)
        summary[method] = {
            "p50_ms": round(statistics.median(latencies), 1),
            "stages_p50_ms": {k: round(statistics.median(v), 1) for k, v in stages.items()},
        }
        print(method, json.dumps(summary[method]), flush=True)
        host = cProfile.Profile()
        host.enable()
        compressor.compress(requests[0])
        host.disable()
        text = io.StringIO()
        import pstats

        pstats.Stats(host, stream=text).sort_stats("tottime").print_stats(25)
        pstats.Stats(host, stream=text).sort_stats("cumulative").print_stats(40)
        with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        ) as device_profile:
            compressor.compress(requests[0])
            sync()
        averages = device_profile.key_averages()
        table = averages.table(sort_by="cuda_time_total", row_limit=25)
        gpu_ms = device_time_ms(table)
        if gpu_ms is not None:
            summary[method]["profiled_gpu_ms"] = round(gpu_ms, 1)
        summary[method]["profiled_host_ms"] = round(sum(s[2] for s in pstats.Stats(host).stats.values()) * 1000, 1)
        (out / f"{method}.txt").write_text(text.getvalue() + "\n\n" + table)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-prompts", type=Path)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--kit", type=Path, default=Path(".carry/prof"))
    parser.add_argument("--out", type=Path, default=Path("profile"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--configured-models", action="store_true", help="the registry's models (real weights)")
    parser.add_argument("--chunk-cache-mb", type=int, default=0, help="0: every request pays its chunks' work")
    parser.add_argument("--encoder-graphs", default="auto", choices=["auto", "on", "off"], help="encoder CUDA graphs")
    parser.add_argument(
        "--new-units", action="store_true", help="clear the sentence-unit cache before each timed request (Punkt too)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on CUDA, as serve)")
    args = parser.parse_args()
    if args.write_prompts:
        write_prompts(args.write_prompts, args.count)
    else:
        profile(
            args.kit,
            args.out,
            args.repeats,
            args.methods.split(","),
            args.device,
            args.configured_models,
            args.chunk_cache_mb,
            args.encoder_graphs,
            args.threads,
            args.new_units,
        )


if __name__ == "__main__":
    main()
