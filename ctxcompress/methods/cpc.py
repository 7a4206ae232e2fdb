"""CPC (Liskovets et al. 2024, arXiv:2409.01227, "Prompt Compression with Context-Aware Sentence Encoding").

Sentence-level, question-aware compression:

1. Each document is split into sentences with Punkt (``ctxcompress.text.split_sentences_with_spans``).
2. Sentences are embedded *in context*: one encoder pass over the document (overlapping windows of the encoder's
   maximum length for long documents) gives contextual word-piece embeddings, mean-pooled per sentence. The paper
   trains a dedicated context-aware encoder; this training-free version uses any sentence-transformers model
   (default: the embedded all-MiniLM-L6-v2) as the context encoder.
3. The question is embedded with the same model's own pooling; every sentence is scored by cosine similarity.
   Without a question the query is the instruction when one is given, else the centroid of the request's
   sentence embeddings (sentences most typical of the context rank first).
4. Sentences are kept best-first (over the whole request) until the target-token budget is reached; the first
   sentence that no longer fits is added back up to the word that still fits, so the prompt lands just under the
   budget. Output keeps the original order, grouped by document; ``ranking`` orders documents by their best
   sentence.
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import Field

from ctxcompress.engines.encoder import SentenceEncoder
from ctxcompress.methods._units import ScoredDocument, keep_best_units
from ctxcompress.methods.base import BaseOptions, CompressionMethod, register_method, run_grouped
from ctxcompress.prompting import PreparedRequest
from ctxcompress.text.sentences import split_sentences_with_spans
from ctxcompress.types import CompressionResult

__all__ = ["CPC", "CPCOptions"]


class CPCOptions(BaseOptions):
    encoder: str = "minilm-l6"
    """Configured sentence-encoder name (any sentence-transformers model)."""
    window_overlap: int = Field(default=64, ge=0, le=256)
    """Word pieces shared by consecutive encoder windows of a long document."""
    language: str = "english"
    """Punkt sentence-splitter language."""
    trim_last_sentence: bool = True
    """Add the first sentence that does not fit, cut at a word boundary, to land close to the budget."""


@register_method
class CPC(CompressionMethod):
    name = "cpc"
    options_model = CPCOptions
    summary = "Context-aware sentence embeddings ranked by similarity to the question; keeps whole sentences."

    def compress_batch(self, requests: list[PreparedRequest]) -> list[CompressionResult]:
        return run_grouped(
            requests,
            lambda p: p.options.encoder,
            lambda name, group: self._run(self.pool.encoder(name, field="options.encoder"), group),
        )

    def _run(self, encoder: SentenceEncoder, requests: list[PreparedRequest]) -> list[CompressionResult]:
        started = time.perf_counter()
        docs = [(r, i) for r, p in enumerate(requests) for i in p.nonempty_indices]
        texts = [requests[r].documents[i] for r, i in docs]
        spans = [
            split_sentences_with_spans(t, requests[r].options.language) for t, (r, _) in zip(texts, docs, strict=True)
        ]
        overlap = requests[0].options.window_overlap  # the same for the whole group (run_grouped)
        vectors = [e.spans for e in encoder.span_embeddings(texts, spans, overlap=overlap)]
        queries_text = [(p.request.question or "").strip() or (p.request.instruction or "").strip() for p in requests]
        asked = [q for q in queries_text if q]
        embedded = dict(zip(asked, encoder.embed(asked), strict=True))
        encode_ms = (time.perf_counter() - started) * 1000
        results = []
        for r, prepared in enumerate(requests):
            mine = [k for k, (owner, _) in enumerate(docs) if owner == r]
            if queries_text[r]:
                query = embedded[queries_text[r]]
            else:  # no question, no instruction: the centroid of the context
                stacked = np.concatenate([vectors[k] for k in mine])
                centroid = stacked.mean(axis=0)
                query = centroid / max(float(np.linalg.norm(centroid)), 1e-12)
            scored = [ScoredDocument(docs[k][1], texts[k], spans[k], vectors[k] @ query) for k in mine]
            best = {d.index: float(d.scores.max()) if len(d.scores) else -np.inf for d in scored}
            ranking = sorted(best, key=lambda i: -best[i])
            kept = keep_best_units(prepared, scored, trim_words=prepared.options.trim_last_sentence)
            elapsed = time.perf_counter()
            results.append(
                prepared.result(
                    kept,
                    ranking=ranking,
                    timings_ms={"encode": round(encode_ms, 2), "total": round((elapsed - started) * 1000, 2)},
                )
            )
        return results
