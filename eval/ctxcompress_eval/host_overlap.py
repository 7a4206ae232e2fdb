"""The host steps of a `hybrid` request before its small-LM stage, serial against the scorer's tokenising on a
host thread (what `methods/hybrid.py` does): Punkt sentence spans, MiniLM tokenising (question + documents) and
SmolLM2 tokenising of the documents. Distinct NQ 20-document prompts with the sentence-span cache cleared before
each, alternating which variant runs first; medians printed, per-prompt times written as JSON.

    TOKENIZERS_PARALLELISM=false .venv/bin/python eval/ctxcompress_eval/host_overlap.py \\
        --kit .carry/prof --out eval/results/host_profile/overlap.json

(``--kit``: folders ``smollm2-135m/`` and ``minilm-l6/`` with their tokenizer files, as eval/device/README.md
describes; the service runs with ``TOKENIZERS_PARALLELISM=false``.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ctxcompress.engines.tokenization import OffsetTokenizer
from ctxcompress.methods import _units
from ctxcompress_eval.datasets import load_nq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, default=Path(".carry/prof"))
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    parser.add_argument("--limit", type=int, default=80, help="rows per gold position (0, 4, 9)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    examples = load_nq(args.data_dir, docs=20, positions=[0, 4, 9], limit=args.limit, skip=100)
    scorer = OffsetTokenizer(AutoTokenizer.from_pretrained(args.kit / "smollm2-135m"))
    encoder = OffsetTokenizer(AutoTokenizer.from_pretrained(args.kit / "minilm-l6"))
    threads = ThreadPoolExecutor(2)

    def encoder_side(question: str, documents: list[str]) -> None:
        [_units.sentence_units(d, "english") for d in documents]
        encoder([question, *documents])

    def serial(question: str, documents: list[str]) -> None:
        encoder_side(question, documents)
        scorer(documents)

    def overlapped(question: str, documents: list[str]) -> None:
        pending = threads.submit(scorer, documents)
        encoder_side(question, documents)
        pending.result()

    times: dict[str, list[float]] = {"serial": [], "overlapped": []}
    variants = [("serial", serial), ("overlapped", overlapped)]
    for i, example in enumerate(examples):
        for name, run in variants if i % 2 else variants[::-1]:
            _units._unit_cache.clear()
            started = time.perf_counter()
            run(example.question, example.documents)
            times[name].append((time.perf_counter() - started) * 1000)
    summary = {name: round(statistics.median(values), 2) for name, values in times.items()}
    print(f"{'variant':11s} {'median ms':>9s}   ({len(examples)} prompts)")
    for name, median in summary.items():
        print(f"{name:11s} {median:9.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "median_ms": summary,
            "per_prompt_ms": times,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM"),
        }
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
