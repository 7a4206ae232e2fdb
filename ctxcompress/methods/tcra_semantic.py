"""TCRA-LLM semantic compression (Liu et al. 2023, arXiv:2310.15556, "TCRA-LLM: Token Compression Retrieval
Augmented Large Language Model for Inference Cost Reduction", §3.2).

Word-level, embedding-guided pruning:

1. Each document is split into sentences (Punkt); sentences longer than ``max_segment_words`` are cut into
   segments of that many words.
2. A word's *impact* is how far the segment embedding moves when the word is removed:
   ``1 - cos(E(segment), E(segment without the word))``. All leave-one-out variants of all segments of all
   requests go through the sentence encoder in one batched call.
3. Impacts are divided by their segment's mean impact, so every sentence is judged on the same scale, then the
   lowest-impact words of the whole request are dropped until the prompt meets the target-token budget
   (a binary search over the number of words kept lands at the largest prompt not above the budget).
4. Protected words are never dropped before every other word is gone: numbers, URLs, code, JSON structure
   (``ctxcompress.text.protected_spans``), ``force_tokens`` and the capitalised words of the question (names).
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import Field

from ctxcompress.engines.encoder import SentenceEncoder
from ctxcompress.methods._units import ScoredDocument, keep_best_units, protected_mask, question_entities, word_spans
from ctxcompress.methods.base import BaseOptions, CompressionMethod, register_method, run_grouped
from ctxcompress.prompting import PreparedRequest
from ctxcompress.text.protect import ProtectKind
from ctxcompress.text.sentences import split_sentences_with_spans
from ctxcompress.types import CompressionResult

__all__ = ["TCRASemantic", "TCRASemanticOptions", "segments_of"]


class TCRASemanticOptions(BaseOptions):
    encoder: str = "minilm-l6"
    """Configured sentence-encoder name."""
    max_segment_words: int = Field(default=20, ge=2, le=256)
    """Longer sentences are judged in segments of this many words (bounds the leave-one-out cost)."""
    protect: list[ProtectKind] = Field(default_factory=lambda: ["digits", "urls", "code", "json", "headers"])
    """Span kinds never dropped."""
    protect_question_entities: bool = True
    """Also protect the capitalised words of the question wherever they occur."""
    force_tokens: list[str] = Field(default_factory=list)
    """Literal strings never dropped."""
    language: str = "english"
    """Punkt sentence-splitter language."""


def segments_of(text: str, language: str, max_words: int) -> list[list[tuple[int, int]]]:
    """Word spans of ``text`` grouped into sentence segments of at most ``max_words`` words."""
    segments = []
    for start, end in split_sentences_with_spans(text, language):
        words = word_spans(text, start, end)
        segments += [words[i : i + max_words] for i in range(0, len(words), max_words)]
    return [s for s in segments if s]


def _variants(text: str, words: list[tuple[int, int]]) -> list[str]:
    """The segment, then the segment without each of its words."""
    start, end = words[0][0], words[-1][1]
    full = text[start:end].strip()
    return [full] + [(text[start:s] + text[e:end]).strip() for s, e in words]


@register_method
class TCRASemantic(CompressionMethod):
    name = "tcra-semantic"
    options_model = TCRASemanticOptions
    summary = "Drops the words whose removal moves the sentence embedding least (TCRA-LLM semantic compression)."

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
        segments = [
            segments_of(t, requests[r].options.language, requests[r].options.max_segment_words)
            for t, (r, _) in zip(texts, docs, strict=True)
        ]
        batch: list[str] = []
        owners: list[tuple[int, int, int]] = []  # (doc, segment, first variant row)
        for d, (text, segs) in enumerate(zip(texts, segments, strict=True)):
            for s, words in enumerate(segs):
                owners.append((d, s, len(batch)))
                batch += _variants(text, words)
        vectors = encoder.embed(batch)
        encode_ms = (time.perf_counter() - started) * 1000
        impacts: list[list[np.ndarray]] = [[np.zeros(0)] * len(segs) for segs in segments]
        for d, s, row in owners:
            n = len(segments[d][s])
            shift = 1.0 - vectors[row + 1 : row + 1 + n] @ vectors[row]
            shift = np.maximum(shift, 0.0)
            mean = float(shift.mean())
            impacts[d][s] = shift / mean if mean > 1e-9 else np.ones(n)
        results = []
        for r, prepared in enumerate(requests):
            opts: TCRASemanticOptions = prepared.options
            force = list(opts.force_tokens)
            if opts.protect_question_entities:
                force += question_entities(prepared.request.question)
            scored = []
            for d, (owner, index) in enumerate(docs):
                if owner != r:
                    continue
                spans = [w for seg in segments[d] for w in seg]
                scores = np.concatenate(impacts[d]) if impacts[d] else np.zeros(0)
                scores[protected_mask(texts[d], spans, list(opts.protect), force)] = np.inf
                scored.append(ScoredDocument(index, texts[d], spans, scores))
            kept = keep_best_units(prepared, scored)
            elapsed = time.perf_counter()
            results.append(
                prepared.result(
                    kept, timings_ms={"encode": round(encode_ms, 2), "total": round((elapsed - started) * 1000, 2)}
                )
            )
        return results
