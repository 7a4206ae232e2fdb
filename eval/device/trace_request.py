"""Where a lone `hybrid` request's wall time goes: a timeline of its host steps on every thread.

The steps (tokenising, the passes' queueing, Punkt, the device reads, the budget fill, ...) are wrapped with timers;
``to_host`` marks where the host waits for the device. Prints the timeline of the median request of
``--repeats`` passes over the kit's prompts (random weights from the kit's configs, as profile_latency.py), and the
median of each step's summed time per request.

There:  python3 eval/device/trace_request.py --kit .carry/prof --repeats 5 [--new-units]
Here:   .venv/bin/python eval/device/trace_request.py --device cpu --signals all --layers 1 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

Event = tuple[str, str, float, float]  # step, thread, start, end (perf_counter seconds)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def wrap(self, owner: object, name: str, label: str | None = None) -> None:
        original = getattr(owner, name)
        step = label or name

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                end = time.perf_counter()
                with self._lock:
                    self.events.append((step, threading.current_thread().name, start, end))

        setattr(owner, name, timed)


def merge_runs(events: list[Event]) -> list[tuple[str, str, float, float, int]]:
    """Consecutive events of one step on one thread as one line (Punkt's per-chunk calls)."""
    merged: list[tuple[str, str, float, float, int]] = []
    for step, thread, t0, t1 in events:
        if merged and merged[-1][0] == step and merged[-1][1] == thread:
            merged[-1] = (step, thread, merged[-1][2], t1, merged[-1][4] + 1)
        else:
            merged.append((step, thread, t0, t1, 1))
    return merged


def instrument(recorder: Recorder) -> None:
    import ctxcompress.engines.attention as attention_engine
    import ctxcompress.engines.encoder as encoder
    import ctxcompress.engines.scorer as scorer
    import ctxcompress.methods.hybrid as hybrid
    from ctxcompress.compressor import Compressor
    from ctxcompress.engines.encoder import QueuedSpanEmbeddings, SentenceEncoder
    from ctxcompress.engines.scorer import CausalLMScorer
    from ctxcompress.prompting import PreparedRequest

    wraps = [
        (Compressor, "prepare", "prepare (validate, count)"),
        (SentenceEncoder, "encode_batch", "encoder: tokenise"),
        (SentenceEncoder, "_encode_windows", "encoder: tokenise + queue pass"),
        (QueuedSpanEmbeddings, "collect", "encoder: collect (pool)"),
        (CausalLMScorer, "encode_batch", "scorer: tokenise"),
        (hybrid, "sentence_attention", "attention: rows + probe + read"),
        (attention_engine.QuestionAttention, "_pass", "probe: pass"),
        (attention_engine.QuestionAttention, "_fill", "probe: fill inputs"),
        (attention_engine, "run_static_pass", "probe: queue pass"),
        (hybrid, "split_sentence_units", "punkt (new chunk)"),
        (hybrid, "keep_best_units", "fill to budget"),
        (hybrid, "fuse", "fuse signals"),
        (PreparedRequest, "result", "assemble result"),
    ]
    # the engines' reads to the host, where the host waits for the device (each module holds its own reference)
    wraps += [(module, "to_host", "to_host (waits for the device)") for module in (attention_engine, encoder, scorer)]
    for owner, name, label in wraps:
        recorder.wrap(owner, name, label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, default=Path(".carry/prof"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--signals", default="auto", help="hybrid's signals (all: the LM signals on CPU too)")
    parser.add_argument("--new-units", action="store_true", help="Punkt on every chunk (the unit cache cleared)")
    parser.add_argument("--layers", type=int, help="that many layers per model (host steps on a CPU: fast passes)")
    parser.add_argument("--out", type=Path, help="also write the events of every request as JSON")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ctxcompress_eval.random_models import use_random_models

    use_random_models(args.kit, args.layers)
    import torch

    from ctxcompress import Compressor
    from ctxcompress.engines.options import EngineOptions
    from ctxcompress.methods._units import sentence_unit_cache

    torch.set_num_threads(1)  # as serve's GPU workers
    compressor = Compressor(device=args.device, engine_options=EngineOptions(chunk_cache_mb=0))
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    prompts = [json.loads(line) for line in (args.kit / "prompts.jsonl").open()]
    requests = [
        {**p, "method": "hybrid", "budget": {"rate": 0.25}, "options": {"signals": args.signals}} for p in prompts
    ]
    for request in requests:  # warm: every prompt once (graph shapes captured, units cached)
        compressor.compress(request)
    recorder = Recorder()
    instrument(recorder)
    traces: list[tuple[float, list[Event], float]] = []
    for _ in range(args.repeats):
        for request in requests:
            if args.new_units:
                sentence_unit_cache().clear()
            sync()
            recorder.events.clear()
            start = time.perf_counter()
            compressor.compress(request)
            wall = time.perf_counter() - start
            traces.append((wall, list(recorder.events), start))
    traces.sort(key=lambda t: t[0])
    wall, events, start = traces[len(traces) // 2]
    print(f"new sentence units: {args.new_units}")
    print(
        f"median request: {wall * 1000:.1f} ms (p10 {traces[len(traces) // 10][0] * 1000:.1f}, "
        f"p90 {traces[len(traces) * 9 // 10][0] * 1000:.1f}; {len(traces)} requests)"
    )
    print(f"{'start ms':>9} {'end ms':>8} {'ms':>6}  thread        step")
    for step, thread, t0, t1, count in merge_runs(sorted(events, key=lambda e: e[2])):
        label = f"{step} x{count}" if count > 1 else step
        span = f"{(t0 - start) * 1000:9.2f} {(t1 - start) * 1000:8.2f} {(t1 - t0) * 1000:6.2f}"
        print(f"{span}  {thread[:12]:<12}  {label}")
    per_step: dict[str, list[float]] = defaultdict(list)
    for _, request_events, _ in traces:
        totals: dict[str, float] = defaultdict(float)
        for step, _, t0, t1 in request_events:
            totals[step] += (t1 - t0) * 1000
        for step, value in totals.items():
            per_step[step].append(value)
    print("\nper request, median of each step's summed time (ms; nested steps counted in both):")
    for step, values in sorted(per_step.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"  {statistics.median(values):7.2f}  {step}")
    if args.out:
        args.out.write_text(json.dumps([{"wall_s": w, "events": e} for w, e, _ in traces]))


if __name__ == "__main__":
    main()
