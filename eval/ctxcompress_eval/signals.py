"""Relevance signals per (question, document) on NQ multi-document QA, for studying their fusion.

Each signal is computed by the library's own code, so what the study finds is what a method gets:

* ``lm_statement``: LongLLMLingua's coarse score, mean NLL of question + restrictive statement given the
  document (``methods.longllmlingua.rank_documents``; lower = more relevant, stored negated);
* ``lm_question``: the same without the restrictive statement;
* ``attention``: per layer, the mean attention the question + answer cue give the document's tokens, each
  document in its own row (no position bias between documents) (``engines.attention``); and ``attention_max``:
  per layer, the best sentence's mean;
* ``encoder``: cosine of MiniLM embeddings of question and document; ``encoder_sentence``: best sentence's;
* ``bm25``: Okapi BM25 of the question over the request's documents (``text.lexical``).

Writes one JSON line per question (signals in the documents' input order, the gold document's index, and per
document whether it holds an answer), read by ``fusion_study.py``.

Example:
    python -m ctxcompress_eval.signals --limit 220 --device cuda --out signals.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]


def _signals(compressor, examples, batch: int) -> list[dict]:  # noqa: ANN001
    from ctxcompress.engines.attention import ObservedSequence
    from ctxcompress.methods._units import sentence_units
    from ctxcompress.methods.longllmlingua import rank_documents
    from ctxcompress.prompting import SEPARATOR
    from ctxcompress.text.lexical import bm25_scores

    scorer = compressor.pool.scorer("smollm2-135m")
    probe = compressor.pool.attention("smollm2-135m")
    encoder = compressor.pool.encoder("minilm-l6")
    out = []
    for start in range(0, len(examples), batch):
        group = examples[start : start + batch]
        docs = [e.documents for e in group]
        questions = [e.question or "" for e in group]
        with_statement = rank_documents(scorer, docs, questions)
        without = rank_documents(scorer, docs, questions, restrictive_statement="")
        rows, owners = [], []
        for r, (documents, question) in enumerate(zip(docs, questions, strict=True)):
            window, _ = scorer.encode(f"{SEPARATOR}Question: {question.strip()}\nAnswer:")
            for d, (ids, offsets) in enumerate(scorer.encode_batch(documents)):
                rows.append(
                    ObservedSequence(list(scorer.bos_ids) + ids[:1024] + window, len(scorer.bos_ids) + len(ids[:1024]))
                )
                owners.append((r, d, offsets[:1024]))
        masses = probe.window_attention(rows)
        attention = [np.zeros((len(d), probe.num_layers)) for d in docs]
        attention_max = [np.zeros((len(d), probe.num_layers)) for d in docs]
        for row, mass, (r, d, offsets) in zip(rows, masses, owners, strict=True):
            tokens = mass[:, len(scorer.bos_ids) : row.window_start]  # [layers, doc tokens]
            attention[r][d] = tokens.mean(axis=1) if tokens.shape[1] else 0.0
            header, spans = sentence_units(docs[r][d], "english")
            lasts = np.array([max(s, e - 1) for s, e in offsets])
            best = np.zeros(probe.num_layers)
            for s, e in spans:
                inside = (lasts >= s) & (lasts < e)
                if inside.any():
                    best = np.maximum(best, tokens[:, inside].mean(axis=1))
            attention_max[r][d] = best
        for r, example in enumerate(group):
            question_vector = encoder.embed([questions[r]])[0]
            doc_vectors = encoder.embed(docs[r])
            sentences, owner = [], []
            for d, text in enumerate(docs[r]):
                header, spans = sentence_units(text, "english")
                for s, e in spans:
                    sentences.append(f"{text[:header]} {text[s:e]}".strip())
                    owner.append(d)
            sentence_sims = encoder.embed(sentences) @ question_vector if sentences else np.zeros(0)
            owner_arr = np.array(owner)
            answers = [a.casefold() for a in example.answers]
            out.append(
                {
                    "id": example.id,
                    "gold": example.gold_index,
                    "has_answer": [any(a in t.casefold() for a in answers) for t in docs[r]],
                    "lm_statement": (-with_statement[r]).tolist(),
                    "lm_question": (-without[r]).tolist(),
                    "attention": attention[r].tolist(),
                    "attention_max": attention_max[r].tolist(),
                    "encoder": (doc_vectors @ question_vector).tolist(),
                    "encoder_sentence": [
                        float(sentence_sims[owner_arr == d].max()) if (owner_arr == d).any() else -1.0
                        for d in range(len(docs[r]))
                    ],
                    "bm25": bm25_scores(questions[r], docs[r]).tolist(),
                }
            )
        print(f"{start + len(group)}/{len(examples)} questions", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    parser.add_argument("--position", type=int, default=0, help="gold position file (signals are per document)")
    parser.add_argument("--skip", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=16, help="questions per batched call")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ctxcompress import Compressor
    from ctxcompress_eval.datasets import load_nq

    examples = load_nq(args.data_dir, docs=20, positions=[args.position], skip=args.skip, limit=args.limit)
    started = time.perf_counter()
    rows = _signals(Compressor(device=args.device), examples, args.batch)
    with gzip.open(args.out, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    print(f"wrote {len(rows)} rows to {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
