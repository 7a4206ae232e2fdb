"""Could one small-LM pass give both of hybrid's LM signals? A study on the held-out NQ questions.

``hybrid`` runs SmolLM2 twice over every document: once for the likelihood signal (mean NLL of the question given
the document, ``methods.longllmlingua.rank_documents``) and once for the attention signal (the question window's
attention to the document, ``engines.attention``). Both rows are BOS + document + a question continuation, so the
attention pass could also return the NLL of its own window tokens ("\\n\\nQuestion: …\\nAnswer:") and the
likelihood pass could go. This computes that window NLL (``lm_window``) and the likelihood signal again
(``lm_question_here``; the committed one ran in bf16 on a GPU) with the library's scorer on the real weights, puts
each beside the committed attention and encoder signals of the same questions (``signals.py`` output), and
compares the fused ranking's gold-document Recall@1, paired per question (95% bootstrap interval), with hybrid's
default weights (likelihood, attention, encoder 1 : 1 : 1, attention from the upper third of the layers).

    PYTHONPATH=eval .venv/bin/python eval/ctxcompress_eval/merged_pass_study.py \\
        eval/results/nq20_quality/signals.jsonl.gz --skip 100 --limit 120 --out eval/results/merged_pass_study
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


def window_nll(
    scorer, documents: list[str], question: str, max_doc_tokens: int = 1024
) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Per document, the mean NLL of the attention row's window tokens (BOS + document + window, as
    ``signals.py`` builds the attention rows), and of the window's question tokens alone (what the likelihood
    signal scores, here after a ``Question:`` label)."""
    from ctxcompress.prompting import SEPARATOR

    label = f"{SEPARATOR}Question: "
    text = f"{label}{question.strip()}\nAnswer:"
    window, offsets = scorer.encode(text)
    q_start, q_end = len(label), len(label) + len(question.strip())
    asked = np.array([start < q_end and end > q_start for start, end in offsets])
    sequences = [ids[:max_doc_tokens] + window for ids, _ in scorer.encode_batch(documents)]
    nll = scorer.token_nll(sequences, score_last=[len(window)] * len(sequences))
    tails = [values[-len(window) :] for values in nll]
    return (
        np.array([float(np.nanmean(tail)) for tail in tails]),
        np.array([float(np.nanmean(tail[asked])) for tail in tails]),
    )


def _fused(row: dict, likelihood: str) -> np.ndarray:
    attention = np.array(row["attention"])  # [documents, layers]
    layers = attention.shape[1]
    upper = attention[:, layers - max(1, layers // 3) :].mean(axis=1)
    signals = {
        "likelihood": np.array(row[likelihood]),
        "attention": np.log(upper + 1e-9),
        "encoder": np.array(row["encoder"]),
    }
    return zsum(signals, WEIGHTS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    held_out_arguments(parser)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    from ctxcompress import Compressor
    from ctxcompress.methods.longllmlingua import rank_documents
    from ctxcompress_eval.datasets import load_nq

    with gzip.open(args.signals, "rt", encoding="utf-8") as handle:
        committed = {row["id"]: row for row in map(json.loads, handle)}
    examples = load_nq(args.data_dir, docs=20, positions=[0], skip=args.skip, limit=args.limit)
    scorer = Compressor(device=args.device).pool.scorer("smollm2-135m")
    rows, started = [], time.perf_counter()
    for i, example in enumerate(examples):
        row = dict(committed[example.id])
        question = example.question or ""
        whole, asked = window_nll(scorer, example.documents, question)
        row["lm_window"], row["lm_window_question"] = (-whole).tolist(), (-asked).tolist()
        # The likelihood signal again, here (the committed one ran in bf16 on a GPU): the paired baseline.
        nll = rank_documents(scorer, [example.documents], [question], restrictive_statement="")[0]
        row["lm_question_here"] = (-nll).tolist()
        rows.append(row)
        if (i + 1) % 10 == 0:
            print(f"{i + 1}/{len(examples)} questions, {time.perf_counter() - started:.0f} s", flush=True)
    golds = [r["gold"] for r in rows]
    report: dict = {"questions": len(rows), "rows": f"{args.skip}-{args.skip + len(rows) - 1}", "weights": WEIGHTS}
    hits = {}
    for name in ("lm_question", "lm_question_here", "lm_window", "lm_window_question"):
        single = recall_at([np.array(r[name]) for r in rows], golds)
        fused_scores = [_fused(r, name) for r in rows]
        fused = recall_at(fused_scores, golds)
        hits[name] = {k: hits_at(fused_scores, golds, k) for k in (1, 3)}
        report[name] = {"alone": single, "fused": fused}
        print(f"{name:18} alone R@1 {single[1]:.3f} R@3 {single[3]:.3f} | fused R@1 {fused[1]:.3f} R@3 {fused[3]:.3f}")
    for name in ("lm_window", "lm_window_question"):
        for k in (1, 3):
            report[f"fused_r{k}_{name}_minus_question_here"] = paired_hits(
                hits[name][k], hits["lm_question_here"][k], f"fused R@{k} {name} − question"
            )
        agree = np.mean([np.argmax(r[name]) == np.argmax(r["lm_question_here"]) for r in rows])
        report[f"top_document_same_alone_{name}"] = float(agree)
        print(f"top document alone same as lm_question_here: {name} {agree:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "merged_pass_study.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
