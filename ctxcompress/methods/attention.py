"""Attention: keep the sentences the question attends to, from one prefill of a small causal LM.

The training-free token-selection family of the KV-cache literature (H2O, SnapKV's observation window,
LazyLLM, Expected Attention) keeps what attention says matters; applied to a RAG prompt before any backend it is
a compressor (Sentinel, arXiv:2505.23277: a frozen 0.5B model's attention per sentence matched a 7B CPC
encoder on LongBench at 5x; QUITO, arXiv:2408.00274).

1. Each document is split into its source header and sentences (Punkt).
2. Every document gets one prefill row of the causal LM (``per_document``; a document longer than
   ``chunk_tokens`` is cut across rows): the document, then ``Question: <question>`` and the answer cue
   (:class:`~ctxcompress.engines.attention.QuestionAttention`, batched across documents and requests). Rows of
   their own keep documents comparable: packed into one sequence, the documents nearest the question drew the
   most attention whatever they said (recency bias).
3. The question and cue tokens are the observation window. A context token's score is the attention mass the
   window's queries give it, averaged over the heads and over ``layers`` (default: the upper third of the stack,
   chosen on the tuning half of the dev NQ questions; see :func:`default_layers`).
4. A document's score is the mean score of its tokens; documents are ranked by it (report-split gold R@1 0.62
   with SmolLM2-135M, against 0.46 for LongLLMLingua's question likelihood). Optionally (``layer_weights``,
   fitted on labelled questions by ``ctxcompress calibrate-attention``) the score is ``Σ_l w_l · z_l``, each
   layer's mean attention on the document z-normalised over the request's documents: a per-layer probe (dev NQ
   report split: R@1 0.675 vs 0.617, R@3 0.825 vs 0.725; the default does not depend on it). Per sentence, the
   mean attention did *not* find the answer sentence on dev (best-sentence R@1 0.03: short and boundary
   sentences draw sink attention), so sentences follow their document's rank and, inside it, their order.
5. Sentences are kept in that order until the target-token budget (whole sentences; the header of every
   document with a kept sentence; then the next whole sentences that still fit). Documents come out best-first
   (``reorder="sort"``, against "lost in the middle") or in input order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from ctxcompress.engines.attention import ObservedSequence, QuestionAttention
from ctxcompress.engines.scorer import CausalLMScorer
from ctxcompress.errors import InvalidInput
from ctxcompress.methods._units import ScoredDocument, keep_best_units, sentence_units
from ctxcompress.methods.base import BaseOptions, CompressionMethod, register_method, run_grouped
from ctxcompress.prompting import SEPARATOR, PreparedRequest
from ctxcompress.types import CompressionResult, KeptDocument

__all__ = ["CHUNK_TOKENS", "Attention", "AttentionOptions", "SentenceScores", "sentence_attention"]


CHUNK_TOKENS = 4096  # context tokens per prefill row by default


class AttentionOptions(BaseOptions):
    scorer: str = "smollm2-135m"
    """Configured causal LM whose attention is read."""
    layers: list[int] | None = None
    """Layer indices averaged (negative counts from the top); default: the upper third."""
    layer_weights: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(default=None, max_length=256)
    """One weight per layer of the scorer (``ctxcompress calibrate-attention`` fits them): documents are ranked
    by the weighted sum of each layer's document attention, z-normalised over the request's documents; None:
    by the mean over ``layers``."""
    per_document: bool = True
    """One prefill row per document (no recency bias between documents); False packs documents into chunks."""
    chunk_tokens: int = Field(default=CHUNK_TOKENS, ge=256, le=32768)
    """Context tokens per prefill row; a longer document is cut across rows, the question after every row."""
    answer_cue: str = "Answer:"
    """Text after the question; its tokens join the observation window."""
    reorder: Literal["sort", "original"] = "sort"
    """Output kept documents best-first (``sort``) or in input order."""
    language: str = "english"
    """Punkt sentence-splitter language."""


@dataclass
class SentenceScores:
    """One document's header end, sentence spans, per-sentence scores and mean token score."""

    header_end: int
    spans: list[tuple[int, int]]
    scores: np.ndarray
    mean: float = 0.0
    window_nll: float = float("nan")
    """Mean NLL of the observation window's tokens in the document's first row (``sentence_attention(window_nll=
    True)``); with ``likelihood_rows`` that is LongLLMLingua's question likelihood of the document."""


def default_layers(num_layers: int) -> list[int]:
    """The upper third of the stack: on the dev NQ tuning questions its attention ranked the gold document first
    most often (report split R@1: upper third 0.617, upper two thirds 0.617, middle third 0.592, all 0.583)."""
    return list(range(num_layers - max(1, num_layers // 3), num_layers))


def sentence_attention(
    scorer: CausalLMScorer,
    probe: QuestionAttention,
    requests: Sequence[tuple[list[str], str]],
    *,
    layers: list[int] | None = None,
    chunk_tokens: int = CHUNK_TOKENS,
    answer_cue: str = "Answer:",
    language: str = "english",
    per_document: bool = False,
    units: Sequence[Sequence[tuple[int, list[tuple[int, int]]]]] | None = None,
    encoded: Sequence[Sequence[tuple[list[int], list[tuple[int, int]]]]] | None = None,
    layer_weights: Sequence[float] | None = None,
    window_nll: bool = False,
    likelihood_rows: bool = False,
    sentences: bool = True,
    while_running: Callable[[], object] | None = None,
) -> list[list[SentenceScores]]:
    """Per request ``(documents, question)``, per document: sentence scores from question-to-context attention.

    All chunks of all requests are one batched call of the probe. ``per_document`` gives every document a row
    of its own (scores comparable across documents, no recency bias between them; the question is repeated).
    ``units``: each document's :func:`sentence_units`, ``encoded``: its ``scorer.encode`` (ids, offsets), where
    the caller has them. ``layer_weights`` (one per layer) replaces each document's ``mean`` by the fitted
    probe's score (every layer is then read). ``window_nll``: each document's mean window NLL from the same
    prefill (needs the probe's ``head``). ``likelihood_rows``: the window is LongLLMLingua's likelihood
    continuation (separator, question, space: ``longllmlingua.rank_documents`` without a statement) instead of
    ``Question: …`` and the answer cue, so with ``per_document`` and ``chunk_tokens`` equal to its
    ``max_doc_tokens`` the window NLL *is* the likelihood signal: both signals from one prefill. ``sentences=False``
    skips the per-sentence pooling (each document's ``spans``/``scores`` stay empty; ``mean`` and ``window_nll``
    are all a document ranking reads). ``while_running``: the caller's host work, done while the probe's pass runs
    on the device. Usable as a signal by other pipelines.
    """
    chosen = layers if layers is not None else default_layers(probe.num_layers)
    if not chosen or any(not -probe.num_layers <= layer < probe.num_layers for layer in chosen):
        raise InvalidInput(f"layers must be indices of the scorer's {probe.num_layers} layers", field="options.layers")
    if layer_weights is not None and len(layer_weights) != probe.num_layers:
        raise InvalidInput(
            f"layer_weights needs one weight per layer of the scorer ({probe.num_layers}), got {len(layer_weights)}",
            field="options.layer_weights",
        )
    read = list(range(probe.num_layers)) if layer_weights is not None else chosen
    if encoded is None:
        encoded = [scorer.encode_batch(docs) for docs, _ in requests]
    separator, _ = scorer.encode(SEPARATOR)
    rows: list[ObservedSequence] = []
    owners: list[list[tuple[int, int, int, int, int]]] = []  # per row: (request, doc, doc start, row start, n)
    for r, (_, question) in enumerate(requests):
        if likelihood_rows:
            window, _ = scorer.encode(f"{SEPARATOR}{question.strip()} ")
        else:
            window, _ = scorer.encode(f"{SEPARATOR}Question: {question.strip()}\n{answer_cue}")
        documents = [ids for ids, _ in encoded[r]]
        groups = [[d] for d in range(len(documents))] if per_document else [list(range(len(documents)))]
        for members in groups:
            packed = _pack(scorer.bos_ids, separator, [documents[d] for d in members], window, chunk_tokens)
            for row, pieces in packed:
                rows.append(row)
                owners.append([(r, members[d], *rest) for d, *rest in pieces])
    token_scores = [[np.zeros(len(ids), dtype=np.float32) for ids, _ in docs] for docs in encoded]
    layer_sums = [np.zeros((len(docs), probe.num_layers)) for docs in encoded]  # per document, per layer
    first_row_nll = [np.full(len(docs), np.nan) for docs in encoded]
    split: list[list[tuple[int, list[tuple[int, int]]]]] = [list(u) for u in units] if units is not None else []

    def split_sentences() -> None:  # CPU work, done while the probe's pass runs on the GPU
        if units is None and sentences:
            split.extend([sentence_units(doc, language) for doc in docs] for docs, _ in requests)
        if while_running is not None:
            while_running()

    readings = probe.read_windows(rows, read, nll=window_nll, while_running=split_sentences)
    for reading, pieces in zip(readings, owners, strict=True):
        mass = reading.attention
        per_token = mass[chosen].mean(axis=0)
        for r, d, doc_start, row_start, n in pieces:
            token_scores[r][d][doc_start : doc_start + n] = per_token[row_start : row_start + n]
            if layer_weights is not None:  # only the fitted probe needs each layer's document mean
                layer_sums[r][d] += mass[:, row_start : row_start + n].sum(axis=1)
            if window_nll and doc_start == 0:
                first_row_nll[r][d] = float(np.nanmean(reading.nll))
    out = []
    for r, (docs, _) in enumerate(requests):
        scored = [
            _pool(split[r][d], encoded[r][d][1], token_scores[r][d])
            if sentences
            else SentenceScores(0, [], np.zeros(0), _mean(token_scores[r][d]))
            for d in range(len(docs))
        ]
        if layer_weights is not None:
            lengths = np.array([len(ids) for ids, _ in encoded[r]], dtype=np.float64)
            for d, score in enumerate(_probe_scores(layer_sums[r], lengths, np.asarray(layer_weights))):
                scored[d].mean = score
        if window_nll:
            for d, value in enumerate(first_row_nll[r]):
                scored[d].window_nll = float(value)
        out.append(scored)
    return out


def _probe_scores(layer_sums: np.ndarray, lengths: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``Σ_l w_l · z_l`` per document: ``z_l`` its mean attention in layer ``l``, z-normalised over the documents
    that have tokens (documents without get −inf)."""
    has_tokens = lengths > 0
    scores = np.full(len(lengths), -np.inf)
    if not has_tokens.any():
        return scores
    means = layer_sums[has_tokens] / lengths[has_tokens, None]
    z = (means - means.mean(axis=0)) / (means.std(axis=0) + 1e-9)
    scores[has_tokens] = z @ weights
    return scores


def _pack(
    bos: list[int], separator: list[int], documents: list[list[int]], window: list[int], chunk_tokens: int
) -> list[tuple[ObservedSequence, list[tuple[int, int, int, int]]]]:
    """Documents packed in order into rows of at most ``chunk_tokens`` context tokens, each followed by the
    observation ``window``; a longer document is cut across rows. Per row, its pieces:
    ``(document, start in the document, start in the row, length)``."""
    out: list[tuple[ObservedSequence, list[tuple[int, int, int, int]]]] = []
    ids, pieces = list(bos), []
    for d, doc_ids in enumerate(documents):
        start = 0
        while start < len(doc_ids):
            gap = len(separator) if pieces else 0
            room = chunk_tokens - (len(ids) - len(bos)) - gap
            if room <= 0:
                out.append((ObservedSequence(ids + window, len(ids)), pieces))
                ids, pieces = list(bos), []
                continue
            ids += separator if gap else []
            piece = doc_ids[start : start + room]
            pieces.append((d, start, len(ids), len(piece)))
            ids += piece
            start += len(piece)
    if pieces:
        out.append((ObservedSequence(ids + window, len(ids)), pieces))
    return out


def _pool(
    units: tuple[int, list[tuple[int, int]]], offsets: list[tuple[int, int]], token_scores: np.ndarray
) -> SentenceScores:
    """Mean token score per sentence of ``units`` (header end, sentence spans); a token belongs to the sentence
    holding its last character (byte-level BPE tokens often start with the space before their word)."""
    header, spans = units
    mean = _mean(token_scores)
    if not spans:
        return SentenceScores(header, [], np.zeros(0), mean)
    starts = np.array([s for s, _ in spans])
    lasts = np.array([max(s, e - 1) for s, e in offsets], dtype=np.int64) if offsets else np.zeros(0, dtype=np.int64)
    owner = np.searchsorted(starts, lasts, side="right") - 1
    owner[lasts < header] = -1
    valid = owner >= 0
    sums = np.bincount(owner[valid], weights=token_scores[: len(owner)][valid], minlength=len(spans))
    counts = np.bincount(owner[valid], minlength=len(spans)).astype(np.float64)
    return SentenceScores(header, spans, np.where(counts > 0, sums / np.maximum(counts, 1), 0.0), mean)


def _mean(token_scores: np.ndarray) -> float:
    return float(token_scores.mean()) if len(token_scores) else 0.0


def select_by_document_rank(
    prepared: PreparedRequest, scored: list[SentenceScores], indices: list[int], *, reorder: str
) -> tuple[list[int], list[KeptDocument]]:
    """Ranking (best document first) and the kept documents: sentences in document-rank order, then in their
    document's order, to the budget."""
    ranking = sorted(indices, key=lambda i: -scored[i].mean)
    rank_of = {i: r for r, i in enumerate(ranking)}
    order = ranking if reorder == "sort" else sorted(indices)
    docs = []
    for i in order:
        position = np.arange(len(scored[i].spans))
        priority = -(rank_of[i] * 10_000 + position).astype(np.float64)  # earlier rank, then earlier sentence
        docs.append(ScoredDocument(i, prepared.documents[i], scored[i].spans, priority, scored[i].header_end))
    return ranking, keep_best_units(prepared, docs, fill=True)


@register_method
class Attention(CompressionMethod):
    name = "attention"
    options_model = AttentionOptions
    needs_question = True
    summary = "Sentences the question attends to in one prefill of a small causal LM (needs a question)."

    def compress_batch(self, requests: list[PreparedRequest]) -> list[CompressionResult]:
        return run_grouped(requests, lambda p: p.options.scorer, self._run)

    def _run(self, name: str, requests: list[PreparedRequest]) -> list[CompressionResult]:
        started = time.perf_counter()
        scorer = self.pool.scorer(name, field="options.scorer")
        probe = self.pool.attention(name, field="options.scorer")
        opts: AttentionOptions = requests[0].options  # the same for the whole group (run_grouped)
        scored = sentence_attention(
            scorer,
            probe,
            [(p.documents, p.request.question or "") for p in requests],
            layers=opts.layers,
            chunk_tokens=opts.chunk_tokens,
            answer_cue=opts.answer_cue,
            language=opts.language,
            per_document=opts.per_document,
            layer_weights=opts.layer_weights,
        )
        attend_ms = (time.perf_counter() - started) * 1000
        results = []
        for prepared, per_doc in zip(requests, scored, strict=True):
            ranking, kept = select_by_document_rank(prepared, per_doc, prepared.nonempty_indices, reorder=opts.reorder)
            total = (time.perf_counter() - started) * 1000
            timings = {"attention": round(attend_ms, 2), "total": round(total, 2)}
            results.append(prepared.result(kept, ranking=ranking, timings_ms=timings))
        return results
