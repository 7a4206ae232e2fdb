"""Does the host's per-prompt work slow down when N processes run it at once? (What caps `bench --processes 10`.)

Each process runs the host steps of a `hybrid` request that do not touch a model, on the kit's NQ prompts, for a
fixed number of seconds: both tokenisers (MiniLM and SmolLM2, from the kit's tokenizer files), Punkt on every
document (no unit cache) and the target tokenizer's count of the whole prompt. It prints per N the median
per-process rate (prompts/s), the sum over processes and the ratio to one process alone. If the per-process rate
falls well below the alone rate before N reaches the host's core count, the host (shared cores, hyperthreads,
memory bandwidth) caps the engine processes, not the GPU.

There:  python3 eval/device/host_contention.py --kit .carry/prof --processes 1,2,5,10,16 --seconds 8
Here:   .venv/bin/python eval/device/host_contention.py --kit .carry/prof --processes 1,2 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path


def _host_steps(kit: str, seconds: float, start_at: float, out: mp.Queue) -> None:
    from transformers import PreTrainedTokenizerFast

    from ctxcompress.engines.tokenization import OffsetTokenizer
    from ctxcompress.methods._units import split_sentence_units
    from ctxcompress.prompting import assemble_prompt
    from ctxcompress.text.tokens import TargetTokenizer

    tokenizers = [
        OffsetTokenizer(PreTrainedTokenizerFast(tokenizer_file=str(Path(kit) / name / "tokenizer.json")))
        for name in ("minilm-l6", "smollm2-135m")
    ]
    target = TargetTokenizer()
    prompts = [json.loads(line) for line in (Path(kit) / "prompts.jsonl").open()]
    split_sentence_units(prompts[0]["documents"][0], "english")  # Punkt's parameters loaded before the clock
    while time.time() < start_at:
        time.sleep(0.001)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        p = prompts[done % len(prompts)]
        for tokenizer in tokenizers:
            tokenizer(p["documents"])
        for document in p["documents"]:
            split_sentence_units(document, "english")
        target.count(assemble_prompt(p.get("instruction"), p["documents"], p["question"]))
        done += 1
    out.put(done / (time.perf_counter() - t0))


def measure(kit: Path, processes: int, seconds: float) -> list[float]:
    context = mp.get_context("spawn")
    out: mp.Queue = context.Queue()
    start_at = time.time() + 8.0  # every process imported and loaded before any starts its clock
    workers = [context.Process(target=_host_steps, args=(str(kit), seconds, start_at, out)) for _ in range(processes)]
    for w in workers:
        w.start()
    rates = [out.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kit", type=Path, required=True, help="tokenizer folders and prompts.jsonl")
    parser.add_argument("--processes", default="1,2,5,10,16", help="comma-separated process counts")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per process count")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the rows")
    args = parser.parse_args()
    rows, alone = [], None
    print(f"{'processes':>9} {'median per process':>19} {'sum':>8} {'per process vs alone':>21}")
    for n in [int(x) for x in args.processes.split(",")]:
        rates = measure(args.kit, n, args.seconds)
        median = statistics.median(rates)
        alone = alone or median
        rows.append({"processes": n, "rates": rates, "median": median, "sum": sum(rates)})
        print(f"{n:>9} {median:>19.1f} {sum(rates):>8.1f} {median / alone:>21.2f}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
