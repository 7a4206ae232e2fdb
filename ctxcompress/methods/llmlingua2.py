"""LLMLingua-2 (Pan et al., ACL Findings 2024, arXiv:2403.12968): token classification for prompt compression.

1. Optional coarse filter (``coarse: true``, needs a question): LongLLMLingua's question-aware document ranking
   with the causal-LM scorer (``longllmlingua.rank_documents``); documents are kept best-first until they hold
   the context budget plus ``coarse_slack_tokens``, then restored to their input order.
2. Each document is cut into whitespace words; words are packed into chunks that end at sentence boundaries and
   fit the classifier's window (a sentence longer than the window is cut at word boundaries).
3. The token classifier (e.g. ``microsoft/llmlingua-2-xlm-roberta-large-meetingbank``) gives every word piece a
   probability of the "keep" label; a word's probability is the mean over its pieces. All chunks of all
   requests run in one batched call.
4. One threshold over the whole request (the reference thresholds each chunk separately and misses the rate):
   words are kept in probability order, and a binary search on the number kept lands the assembled prompt at the
   largest size not above the target-token budget. Words overlapping numbers (``protect``) or ``force_tokens``
   are kept first.

No token-classification model ships offline: configure one in ``$CTXCOMPRESS_MODELS`` with kind
``token-classifier`` and name it in ``options.classifier``.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
from pydantic import Field

from ctxcompress.engines.classifier import TokenClassifier
from ctxcompress.errors import InvalidInput
from ctxcompress.methods._units import ScoredDocument, keep_best_units, protected_mask, word_spans
from ctxcompress.methods.base import BaseOptions, CompressionMethod, register_method, run_grouped
from ctxcompress.methods.llmlingua import keep_until_budget
from ctxcompress.methods.longllmlingua import RESTRICTIVE_STATEMENT, rank_documents
from ctxcompress.prompting import PreparedRequest
from ctxcompress.text.protect import ProtectKind
from ctxcompress.text.sentences import split_sentences_with_spans
from ctxcompress.types import CompressionResult

__all__ = ["LLMLingua2", "LLMLingua2Options", "chunk_words"]


class LLMLingua2Options(BaseOptions):
    classifier: str | None = None
    """Configured token-classification model name (required; none ships offline)."""
    protect: list[ProtectKind] = Field(default_factory=lambda: ["digits"])
    """Span kinds always kept (the reference's ``force_reserve_digit``)."""
    force_tokens: list[str] = Field(default_factory=list)
    """Literal strings always kept."""
    coarse: bool = False
    """Run LongLLMLingua's question-aware document filter first (needs a question)."""
    scorer: str = "smollm2-135m"
    """Configured causal-LM name for the coarse filter."""
    coarse_slack_tokens: int = Field(default=100, ge=0)
    """Documents are kept until they exceed the context budget by this many tokens."""
    language: str = "english"
    """Punkt sentence-splitter language (chunk ends)."""


def chunk_words(
    text: str, words: list[tuple[int, int]], pieces: list[int], limit: int, language: str
) -> list[list[int]]:
    """Word indices grouped into chunks of at most ``limit`` word pieces, cut at sentence ends when possible."""
    sentence_ends = [e for _, e in split_sentences_with_spans(text, language)]
    chunks: list[list[int]] = []
    current: list[int] = []
    used = 0
    sentence: list[int] = []
    sentence_pieces = 0
    boundary = iter(sentence_ends)
    end = next(boundary, len(text))

    def flush_sentence() -> None:
        nonlocal current, used, sentence, sentence_pieces
        if current and used + sentence_pieces > limit:
            chunks.append(current)
            current, used = [], 0
        for w in sentence:  # a sentence longer than the window is cut at word boundaries
            if current and used + pieces[w] > limit:
                chunks.append(current)
                current, used = [], 0
            current.append(w)
            used += pieces[w]
        sentence, sentence_pieces = [], 0

    for w, (start, _) in enumerate(words):
        while start >= end:
            flush_sentence()
            end = next(boundary, len(text))
        sentence.append(w)
        sentence_pieces += pieces[w]
    flush_sentence()
    if current:
        chunks.append(current)
    return chunks


@register_method
class LLMLingua2(CompressionMethod):
    name = "llmlingua2"
    options_model = LLMLingua2Options
    required_options = ("classifier",)
    summary = "Token classification (keep probability per word) with one threshold per request (LLMLingua-2)."

    def validate(self, prepared: PreparedRequest) -> None:
        super().validate(prepared)
        opts: LLMLingua2Options = prepared.options
        if not opts.classifier:
            known = self.pool.registry.names("token-classifier")
            raise InvalidInput(
                "llmlingua2 needs options.classifier, a token-classification model configured in "
                "CTXCOMPRESS_MODELS (e.g. microsoft/llmlingua-2-xlm-roberta-large-meetingbank); configured: "
                + (", ".join(known) or "none"),
                field="options.classifier",
            )
        if opts.coarse and not (prepared.request.question or "").strip():
            raise InvalidInput("llmlingua2 with coarse: true needs a question", field="question")

    def compress_batch(self, requests: list[PreparedRequest]) -> list[CompressionResult]:
        return run_grouped(
            requests,
            lambda p: p.options.classifier,
            lambda name, group: self._run(self.pool.classifier(name, field="options.classifier"), group),
        )

    def _coarse(self, requests: list[PreparedRequest]) -> tuple[list[list[int]], list[list[int] | None]]:
        """Per request: the documents to classify (input order) and the coarse ranking when one ran."""
        kept: list[list[int]] = [p.nonempty_indices for p in requests]
        rankings: list[list[int] | None] = [None] * len(requests)
        by_scorer: dict[str, list[int]] = defaultdict(list)
        for r, prepared in enumerate(requests):
            if prepared.options.coarse:
                by_scorer[prepared.options.scorer].append(r)
        for name, members in by_scorer.items():
            scorer = self.pool.scorer(name, field="options.scorer")
            scores = rank_documents(
                scorer,
                [[requests[r].documents[i] for i in kept[r]] for r in members],
                [requests[r].request.question or "" for r in members],
                restrictive_statement=RESTRICTIVE_STATEMENT,
            )
            for r, doc_scores in zip(members, scores, strict=True):
                prepared = requests[r]
                ranking = [kept[r][j] for j in np.argsort(doc_scores, kind="stable")]
                tokens = [prepared.target.count(d) if d.strip() else 0 for d in prepared.documents]
                budget = prepared.context_budget() + prepared.options.coarse_slack_tokens
                kept[r] = sorted(keep_until_budget(ranking, tokens, budget))
                rankings[r] = ranking
        return kept, rankings

    def _run(self, classifier: TokenClassifier, requests: list[PreparedRequest]) -> list[CompressionResult]:
        started = time.perf_counter()
        kept, rankings = self._coarse(requests)
        coarse_ms = (time.perf_counter() - started) * 1000
        limit = classifier.max_length - classifier.num_special
        docs: list[tuple[int, int, str, list[tuple[int, int]]]] = []  # (request, index, text, word spans)
        chunks: list[list[str]] = []
        owners: list[tuple[int, list[int]]] = []  # (doc, word indices) of each chunk
        for r, prepared in enumerate(requests):
            for index in kept[r]:
                text = prepared.documents[index]
                spans = word_spans(text)
                words = [text[s:e].strip() for s, e in spans]
                pieces = classifier.word_pieces(words)
                for chunk in chunk_words(text, spans, pieces, limit, prepared.options.language):
                    owners.append((len(docs), chunk))
                    chunks.append([words[w] for w in chunk])
                docs.append((r, index, text, spans))
        probabilities = classifier.keep_probabilities(chunks)
        scores = [np.zeros(len(spans)) for _, _, _, spans in docs]
        for (d, chunk), probs in zip(owners, probabilities, strict=True):
            scores[d][chunk] = np.nan_to_num(probs, nan=1.0)  # a word with no piece costs nothing: keep
        classify_ms = (time.perf_counter() - started) * 1000 - coarse_ms
        results = []
        for r, prepared in enumerate(requests):
            opts: LLMLingua2Options = prepared.options
            scored = []
            for d, (owner, index, text, spans) in enumerate(docs):
                if owner == r:
                    scores[d][protected_mask(text, spans, list(opts.protect), list(opts.force_tokens))] = np.inf
                    scored.append(ScoredDocument(index, text, spans, scores[d]))
            kept_docs = keep_best_units(prepared, scored)
            elapsed = time.perf_counter()
            results.append(
                prepared.result(
                    kept_docs,
                    ranking=rankings[r],
                    timings_ms={
                        "coarse": round(coarse_ms, 2),
                        "classify": round(classify_ms, 2),
                        "total": round((elapsed - started) * 1000, 2),
                    },
                )
            )
        return results
