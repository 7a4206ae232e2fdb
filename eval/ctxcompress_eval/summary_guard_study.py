"""How often does tcra-summary's faithfulness guard fire, and what does it cost in answers kept?

Runs ``tcra-summary`` on NQ prompts with the guard on and off (same prompts, same generator, one run) and
counts, per generated summary, sentences dropped and fallbacks to the document's leading sentences; answer
retention (a gold answer string in the compressed prompt) is paired between the two settings.

Example (CPU, embedded SmolLM2-135M-Instruct):
    python -m ctxcompress_eval.summary_guard_study --skip 100 --limit 15 --rate 0.25 --json guard.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ctxcompress import Compressor
from ctxcompress.methods import tcra_summary
from ctxcompress.methods.summary_guard import GuardedSummary, supported_summary
from ctxcompress_eval.datasets import load_nq
from ctxcompress_eval.metrics import contains_answer

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--position", type=int, default=9)
    parser.add_argument("--skip", type=int, default=100, help="first NQ row (rows below 100 were used for tuning)")
    parser.add_argument("--limit", type=int, default=15)
    parser.add_argument("--rate", type=float, default=0.25)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    examples = load_nq(args.data_dir, docs=args.docs, positions=[args.position], limit=args.limit, skip=args.skip)
    seen: list[GuardedSummary] = []

    def counting(summary: str, source: str, language: str = "english") -> GuardedSummary:
        guarded = supported_summary(summary, source, language)
        seen.append(guarded)
        return guarded

    tcra_summary.supported_summary = counting  # the method calls the guard through this module name
    compressor = Compressor(device=args.device)
    kept: dict[bool, list[bool]] = {True: [], False: []}
    started = time.perf_counter()
    for example in examples:
        for faithful in (True, False):
            result = compressor.compress(
                {
                    "method": "tcra-summary",
                    "documents": example.documents,
                    "question": example.question,
                    "instruction": example.instruction,
                    "budget": {"rate": args.rate},
                    "options": {"faithful": faithful},
                }
            )
            kept[faithful].append(contains_answer(result.prompt, example.answers))
    summaries = len(seen)
    fired = sum(g.dropped > 0 for g in seen)
    fallback = sum(not g.text for g in seen)
    sentences = sum(g.sentences for g in seen)
    dropped = sum(g.dropped for g in seen)
    report = {
        "prompts": len(examples),
        "rows": [args.skip, args.skip + args.limit],
        "rate": args.rate,
        "summaries": summaries,
        "summaries_with_a_dropped_sentence": fired,
        "summaries_replaced_by_leading_sentences": fallback,
        "sentences": sentences,
        "sentences_dropped": dropped,
        "answer_kept_guard_on": sum(kept[True]) / len(examples),
        "answer_kept_guard_off": sum(kept[False]) / len(examples),
        "prompts_where_only_guard_on_keeps_it": sum(a and not b for a, b in zip(kept[True], kept[False], strict=True)),
        "prompts_where_only_guard_off_keeps_it": sum(b and not a for a, b in zip(kept[True], kept[False], strict=True)),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(f"{summaries} summaries on {len(examples)} prompts (rows {args.skip}-{args.skip + args.limit - 1})")
    print(f"  guard fired on {fired} ({fired / max(summaries, 1):.0%}); {dropped}/{sentences} sentences dropped")
    print(f"  replaced by the document's leading sentences: {fallback} ({fallback / max(summaries, 1):.0%})")
    print(f"  answer kept: guard on {report['answer_kept_guard_on']:.3f}, off {report['answer_kept_guard_off']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
