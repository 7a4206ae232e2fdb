"""Hybrid: documents ranked by fusing relevance signals that fail differently; the best evidence kept whole.

Coarse-to-fine, training-free:

1. **Document relevance by score fusion** (CombSUM of z-scores, Fox & Shaw 1994): each signal is z-normalised
   over the request's documents and the weighted sum ranks them. Signals:

   * ``encoder``: cosine of sentence-encoder embeddings (default MiniLM) of question and document;
   * ``encoder_sentence``: the document's best sentence's cosine, the sentence's vector pooled from the
     document's in-context token embeddings of the same encoder pass ("late chunking", Günther et al. 2024,
     arXiv:2409.04701: one pass instead of a second one over every sentence);
   * ``lexical``: Okapi BM25 of the question over the request's documents (``text/lexical.py``): exact names,
     numbers and rare words, which embeddings and small LMs miss most;
   * ``likelihood``: LongLLMLingua's coarse score, the small causal LM's mean log-likelihood of the question
     given the document (Jiang et al. 2024), here *without* the paper's restrictive statement, which cost
     SmolLM2-135M a third of its first places on dev (report-split gold R@1 0.58 without, 0.46 with);
   * ``attention``: the attention the question pays to the document in one prefill of the small LM, each
     document in its own row, upper third of the layers (``methods/attention.py``; Sentinel, arXiv:2505.23277).

   With both LM signals weighted (and no restrictive statement) they come from **one** prefill per document:
   the attention is read from the likelihood row (document, separator, question), whose window NLL is the
   likelihood signal exactly. On 120 held-out NQ questions that ranks as well as two passes (fused R@1 +0.008
   [95% CI −0.017, +0.042], R@3 +0.000 [−0.025, +0.025]; eval/results/shared_row_study/) with ~40% less GPU time.

   ``signals="auto"`` uses the small-LM signals on CUDA only: on CPU they cost ~10 s per 3k-token prompt on
   two cores, the encoder pass ~1 s.
2. **Sentence scores**: a sentence scores its document's fused score plus ``sentence_weight`` times its own
   z-scored similarity to the question (over all the request's sentences), so the best documents come first
   and inside and across them the sentences closest to the question.
3. **Selection**: whole sentences best-first over the request until the target-token budget (the header of
   every document with a kept sentence stays); documents best-first (``reorder="sort"``) or in input order.

Default weights: a grid search on the tuning rows (0-99) of the dev NQ questions (``fusion_study.py``) chose
likelihood, attention and encoder with equal weights, and no weight for the best-sentence and BM25 signals;
on the report rows (100-219) that ranks the gold document first for 0.68 of the questions, in the top 5 for
0.87 (eval/results/nq20_quality/README.md). ``sentence_weight`` was not tuned.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
from pydantic import Field

from ctxcompress.methods._units import ScoredDocument, cached_sentence_units, keep_best_units, split_sentence_units
from ctxcompress.methods.attention import CHUNK_TOKENS, sentence_attention
from ctxcompress.methods.base import BaseOptions, CompressionMethod, register_method, run_grouped
from ctxcompress.methods.longllmlingua import RANK_DOC_TOKENS, rank_documents
from ctxcompress.prompting import PreparedRequest
from ctxcompress.text.lexical import bm25_scores
from ctxcompress.types import CompressionResult

__all__ = ["Hybrid", "HybridOptions", "fuse"]

_host_threads: ThreadPoolExecutor | None = None
_host_threads_lock = threading.Lock()


def host_threads() -> ThreadPoolExecutor:
    """This process's threads for tokenising beside other host work (two: enough for two devices' worker threads).
    Made on first use and again in a forked child, whose copy of the parent's pool has no live threads."""
    global _host_threads
    with _host_threads_lock:
        if _host_threads is None:
            _host_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ctxc-tokenize")
        return _host_threads


def _forget_host_threads() -> None:
    global _host_threads, _host_threads_lock
    _host_threads, _host_threads_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_host_threads)


class HybridOptions(BaseOptions):
    encoder: str = "minilm-l6"
    """Configured sentence encoder."""
    scorer: str = "smollm2-135m"
    """Configured causal LM for the likelihood and attention signals."""
    signals: Literal["auto", "encoder", "all"] = "auto"
    """``encoder``: encoder + lexical; ``all``: + small-LM likelihood and attention; ``auto``: all on CUDA."""
    encoder_weight: float = Field(default=1.0, ge=0.0)
    encoder_sentence_weight: float = Field(default=0.0, ge=0.0)
    lexical_weight: float = Field(default=0.0, ge=0.0)
    likelihood_weight: float = Field(default=1.0, ge=0.0)
    likelihood_statement: str = ""
    """Appended to the question in the likelihood signal (LongLLMLingua's restrictive statement: opt-in)."""
    attention_weight: float = Field(default=1.0, ge=0.0)
    sentence_weight: float = Field(default=0.5, ge=0.0)
    """Weight of a sentence's own similarity beside its document's fused score."""
    reorder: Literal["sort", "original"] = "sort"
    """Output kept documents best-first (``sort``) or in input order."""
    language: str = "english"
    """Punkt sentence-splitter language."""


def _z(values: np.ndarray) -> np.ndarray:
    if len(values) < 2:
        return np.zeros(len(values))
    return (values - values.mean()) / (values.std() + 1e-9)


def fuse(signals: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted sum of per-signal z-scores (signals with weight 0 or absent are skipped)."""
    total = np.zeros(len(next(iter(signals.values())))) if signals else np.zeros(0)
    for name, values in signals.items():
        if weights.get(name, 0.0):
            total = total + weights[name] * _z(np.asarray(values, dtype=np.float64))
    return total


@register_method
class Hybrid(CompressionMethod):
    name = "hybrid"
    options_model = HybridOptions
    needs_question = True
    summary = "Documents ranked by fused encoder, lexical and small-LM signals; best whole sentences to the budget."

    def compress_batch(self, requests: list[PreparedRequest]) -> list[CompressionResult]:
        return run_grouped(requests, lambda p: p.options.encoder, self._run)

    def _run(self, encoder_name: str, requests: list[PreparedRequest]) -> list[CompressionResult]:
        started = time.perf_counter()
        opts: HybridOptions = requests[0].options  # the same for the whole group (run_grouped)
        encoder = self.pool.encoder(encoder_name, field="options.encoder")
        use_lm = opts.signals == "all" or (opts.signals == "auto" and self.pool.device.type == "cuda")
        indices = [p.nonempty_indices for p in requests]
        documents = [[p.documents[i] for i in idx] for p, idx in zip(requests, indices, strict=True)]
        questions = [(p.request.question or "").strip() for p in requests]
        scorer = self.pool.scorer(opts.scorer, field="options.scorer") if use_lm else None
        # The scorer's tokenising (ids and offsets per document, shared by both LM signals) runs on a host thread
        # beside the encoder's tokenising and its pass: fast tokenizers release the GIL.
        scorer_tokens = (
            host_threads().submit(lambda: [scorer.encode_batch(docs) for docs in documents])
            if scorer is not None
            else None
        )
        # One encoder pass over questions and documents gives document vectors and, pooled from the same in-context
        # token embeddings, sentence vectors (late chunking). It is queued now; sentences of chunks seen before
        # come from the unit cache, the others are split (Punkt: pure Python) while the device runs the encoder's
        # and the small LM's passes, and the sentence vectors are pooled once every document's units are known.
        mark = time.perf_counter()
        known = [[cached_sentence_units(d, opts.language) for d in docs] for docs in documents]
        known_spans = [u[1] if u is not None else None for doc_units in known for u in doc_units]
        queued = encoder.queue_span_embeddings(
            [*questions, *(d for docs in documents for d in docs)], [[] for _ in questions] + known_spans
        )
        timings = {"encode": (time.perf_counter() - mark) * 1000}
        units: list[list[tuple[int, list[tuple[int, int]]]]] = []

        def split_sentences() -> None:
            if not units:
                units.extend(
                    [
                        u if u is not None else split_sentence_units(d, opts.language)
                        for d, u in zip(docs, doc_known, strict=True)
                    ]
                    for docs, doc_known in zip(documents, known, strict=True)
                )

        lm_signals: list[dict[str, np.ndarray]] = [{} for _ in requests]
        if scorer is not None and scorer_tokens is not None:  # the LM signals
            encoded = scorer_tokens.result()
            # Both LM signals from one prefill per document when both are used: the attention is read from the
            # likelihood row (document, separator, question), whose window NLL is the likelihood signal.
            merged = bool(opts.likelihood_weight and opts.attention_weight and not opts.likelihood_statement)
            if opts.likelihood_weight and not merged:
                mark = time.perf_counter()
                ranked = rank_documents(
                    scorer,
                    documents,
                    questions,
                    restrictive_statement=opts.likelihood_statement,
                    encodings=[[ids for ids, _ in per_request] for per_request in encoded],
                )
                for r, nll in enumerate(ranked):
                    lm_signals[r]["likelihood"] = -nll
                timings["likelihood"] = (time.perf_counter() - mark) * 1000
            if opts.attention_weight:
                mark = time.perf_counter()
                probe = self.pool.attention(opts.scorer, field="options.scorer")
                attended = sentence_attention(
                    scorer,
                    probe,
                    list(zip(documents, questions, strict=True)),
                    language=opts.language,
                    per_document=True,
                    sentences=False,  # documents are ranked; sentences get the encoder's similarity
                    encoded=encoded,
                    window_nll=merged,
                    likelihood_rows=merged,
                    chunk_tokens=RANK_DOC_TOKENS if merged else CHUNK_TOKENS,
                    while_running=split_sentences,
                )
                for r, per_doc in enumerate(attended):
                    lm_signals[r]["attention"] = np.log(np.array([s.mean for s in per_doc]) + 1e-9)
                    if merged:
                        likelihood = -np.array([s.window_nll for s in per_doc])
                        # a document without tokens has no row (never with byte-level BPE): the worst score
                        floor = np.nanmin(likelihood) if np.isfinite(likelihood).any() else 0.0
                        lm_signals[r]["likelihood"] = np.nan_to_num(likelihood, nan=floor)
                timings["attention"] = (time.perf_counter() - mark) * 1000
        split_sentences()
        mark = time.perf_counter()
        embedded = queued.collect([[] for _ in questions] + [spans for doc_units in units for _, spans in doc_units])
        cursor = len(questions)
        signals: list[dict[str, np.ndarray]] = []
        sentence_sims: list[np.ndarray] = []
        owners = [np.repeat(np.arange(len(doc_units)), [len(spans) for _, spans in doc_units]) for doc_units in units]
        for r, docs in enumerate(documents):
            question = embedded[r].pooled
            per_doc = embedded[cursor : cursor + len(docs)]
            cursor += len(docs)
            doc_sims = np.array([d.pooled @ question for d in per_doc])
            sims = [d.spans @ question for d in per_doc]
            sentence_sims.append(np.concatenate(sims) if sims else np.zeros(0))
            best = np.array([sim.max() if len(sim) else -1.0 for sim in sims])
            signals.append({"encoder": doc_sims, "encoder_sentence": best})
            if opts.lexical_weight:
                signals[r]["lexical"] = bm25_scores(questions[r], docs)
            signals[r].update(lm_signals[r])  # fused in this order (a float sum's order is part of its value)
        timings["encode"] += (time.perf_counter() - mark) * 1000
        weights = {
            "encoder": opts.encoder_weight,
            "encoder_sentence": opts.encoder_sentence_weight,
            "lexical": opts.lexical_weight,
            "likelihood": opts.likelihood_weight,
            "attention": opts.attention_weight,
        }
        results = []
        for r, prepared in enumerate(requests):
            fused = fuse(signals[r], weights)
            ranking_local = list(np.argsort(-fused, kind="stable"))
            ranking = [indices[r][j] for j in ranking_local]
            order = ranking_local if opts.reorder == "sort" else list(range(len(indices[r])))
            owner = owners[r]
            scores = fused[owner] + opts.sentence_weight * _z(sentence_sims[r]) if len(owner) else np.zeros(0)
            starts = np.cumsum([0] + [len(spans) for _, spans in units[r]])
            docs = [
                ScoredDocument(
                    indices[r][j], documents[r][j], units[r][j][1], scores[starts[j] : starts[j + 1]], units[r][j][0]
                )
                for j in order
            ]
            kept = keep_best_units(prepared, docs, fill=True)
            stages = {**timings, "total": (time.perf_counter() - started) * 1000}
            timings_ms = {k: round(v, 2) for k, v in stages.items()}
            results.append(prepared.result(kept, ranking=ranking, timings_ms=timings_ms))
        return results
