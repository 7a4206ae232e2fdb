"""One prefill for both of hybrid's LM signals, second try: the attention row *is* the likelihood row.

``merged_pass_study.py`` read the likelihood from the attention row (document + ``Question: …`` + ``Answer:``):
the whole window's NLL lost 3.3 points of fused Recall@3 and the question tokens' NLL alone lost 13 points of
R@1. Here the attention is read instead from the likelihood row (BOS + document + separator + question + space,
``methods.longllmlingua.rank_documents`` with no statement), whose window NLL *is* the likelihood signal. Both
rows run through the library's attention probe on the real SmolLM2-135M (fp32, CPU), per held-out NQ question:

* ``cue`` window (today's attention signal) → attention ``attention_cue`` and window NLL ``lm_cue_window``;
* ``likelihood`` window → attention ``attention_shared`` and window NLL ``lm_shared`` (= the likelihood signal).

Fused with the committed encoder signal (hybrid's weights 1:1:1, upper third of the layers), paired per question:
today's pair (``lm_shared`` + ``attention_cue``: two passes) against the shared row (``lm_shared`` +
``attention_shared``: one pass), Recall@1 and @3 with 95% bootstrap intervals.

    PYTHONPATH=eval .venv/bin/python eval/ctxcompress_eval/shared_row_study.py \\
        eval/results/nq20_quality/signals.jsonl.gz --skip 100 --limit 120 --out eval/results/shared_row_study
"""

from __future__ import annotations

import argparse
import gzip
import json
import time

import numpy as np

from ctxcompress_eval.fusion_study import held_out_arguments, hits_at, paired_hits, recall_at, zsum

__all__ = ["main"]

WEIGHTS = {"likelihood": 1.0, "attention": 1.0, "encoder": 1.0}  # methods/hybrid.py defaults
PAIRS = {  # name: (likelihood signal, attention signal)
    "two_passes": ("lm_shared", "attention_cue"),
    "shared_row": ("lm_shared", "attention_shared"),
    "cue_row": ("lm_cue_window", "attention_cue"),
}


def read_rows(scorer, probe, documents: list[str], window: list[int], layers: list[int]):  # noqa: ANN001, ANN201
    """Per document: log mean attention (``layers``) over its tokens and the window's mean NLL, from one row each."""
    from ctxcompress.engines.attention import ObservedSequence

    encoded = [ids[:1024] for ids, _ in scorer.encode_batch(documents)]
    rows = [ObservedSequence(scorer.bos_ids + ids + window, len(scorer.bos_ids) + len(ids)) for ids in encoded]
    readings = probe.read_windows(rows, layers)
    attention = np.array(
        [
            np.log(float(r.attention[layers].mean(axis=0)[len(scorer.bos_ids) : row.window_start].mean()) + 1e-9)
            for r, row in zip(readings, rows, strict=True)
        ]
    )
    nll = np.array([float(np.nanmean(r.nll)) for r in readings])
    return attention, -nll


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    held_out_arguments(parser)
    args = parser.parse_args(argv)

    from ctxcompress import Compressor
    from ctxcompress.methods.attention import default_layers
    from ctxcompress.prompting import SEPARATOR
    from ctxcompress_eval.datasets import load_nq

    with gzip.open(args.signals, "rt", encoding="utf-8") as handle:
        committed = {row["id"]: row for row in map(json.loads, handle)}
    examples = load_nq(args.data_dir, docs=20, positions=[0], skip=args.skip, limit=args.limit)
    pool = Compressor(device="cpu").pool
    scorer, probe = pool.scorer("smollm2-135m"), pool.attention("smollm2-135m")
    layers = default_layers(probe.num_layers)
    rows, started = [], time.perf_counter()
    for i, example in enumerate(examples):
        question = (example.question or "").strip()
        cue, _ = scorer.encode(f"{SEPARATOR}Question: {question}\nAnswer:")
        shared, _ = scorer.encode(f"{SEPARATOR}{question} ")  # rank_documents' continuation, no statement
        row = {"id": example.id, "gold": committed[example.id]["gold"], "encoder": committed[example.id]["encoder"]}
        for name, window in (("cue", cue), ("shared", shared)):
            attention, likelihood = read_rows(scorer, probe, example.documents, window, layers)
            row[f"attention_{name}"] = attention.tolist()
            row["lm_cue_window" if name == "cue" else "lm_shared"] = likelihood.tolist()
        rows.append(row)
        if (i + 1) % 10 == 0:
            print(f"{i + 1}/{len(examples)} questions, {time.perf_counter() - started:.0f} s", flush=True)
    golds = [r["gold"] for r in rows]
    report: dict = {"questions": len(rows), "rows": f"{args.skip}-{args.skip + len(rows) - 1}", "weights": WEIGHTS}
    hits = {}
    for name, (likelihood, attention) in PAIRS.items():
        scores = [
            zsum(
                {
                    "likelihood": np.array(r[likelihood]),
                    "attention": np.array(r[attention]),
                    "encoder": np.array(r["encoder"]),
                },
                WEIGHTS,
            )
            for r in rows
        ]
        report[name] = {"fused": recall_at(scores, golds), "signals": [likelihood, attention]}
        hits[name] = {k: hits_at(scores, golds, k) for k in (1, 3)}
        fused = report[name]["fused"]
        print(f"{name:11} fused R@1 {fused[1]:.3f} R@3 {fused[3]:.3f} R@5 {fused[5]:.3f}")
    for name in ("shared_row", "cue_row"):
        for k in (1, 3):
            report[f"fused_r{k}_{name}_minus_two_passes"] = paired_hits(
                hits[name][k], hits["two_passes"][k], f"R@{k} {name} − two passes"
            )
    for name in ("attention_cue", "attention_shared"):
        report[f"{name}_alone"] = recall_at([np.array(r[name]) for r in rows], golds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shared_row_study.json").write_text(json.dumps(report, indent=2))
    with gzip.open(args.out / "signals.jsonl.gz", "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
