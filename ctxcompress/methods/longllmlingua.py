"""LongLLMLingua (Jiang et al., ACL 2024, arXiv:2310.06839): question-aware coarse-to-fine compression.

1. Question-aware coarse ranking: each document d is scored by the mean NLL of
   ``question + restrictive statement`` given d, i.e. ``-log p(x_que, x_restrict | d)`` (lower = d makes the
   question more likely = more relevant). Documents are kept in rank order until they hold the context
   budget plus ``coarse_slack_tokens``.
2. Document reordering: kept documents are output best-first (``reorder="sort"``), against "lost in the middle",
   or in their original order.
3. Dynamic compression ratio: the kept document at rank r of K gets rate ``tau + delta * (1 - 2r/(K-1))``
   (clipped to [0, 1]), where ``tau`` is the uniform rate that meets the budget and ``delta`` is
   ``dynamic_ratio``; better-ranked documents keep more tokens.
4. Question-aware fine compression: iterative token pruning with contrastive scores, surprisal without the
   question minus surprisal with the question in front (see ``_token_pruning``).
5. Subsequence recovery of an LLM response against the original prompt is ``ctxcompress.recover``.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import Field

from ctxcompress.engines.scorer import CausalLMScorer
from ctxcompress.methods._token_pruning import build_document, build_plan, finish_results, score_plans
from ctxcompress.methods.base import CompressionMethod, register_method, run_grouped
from ctxcompress.methods.llmlingua import (
    LLMLinguaOptions,
    conditioning_prefix,
    keep_until_budget,
)
from ctxcompress.prompting import SEPARATOR, PreparedRequest
from ctxcompress.types import CompressionResult

__all__ = ["RANK_DOC_TOKENS", "LongLLMLingua", "LongLLMLinguaOptions", "rank_documents"]

RESTRICTIVE_STATEMENT = "We can get the answer to this question in the given documents."


RANK_DOC_TOKENS = 1024  # a document's tokens the coarse (likelihood) ranking conditions on


class LongLLMLinguaOptions(LLMLinguaOptions):
    dynamic_ratio: float = Field(default=0.3, ge=0.0, le=1.0)
    """``delta``: rate spread between the best and the worst kept document."""
    reorder: Literal["sort", "original"] = "sort"
    """Output kept documents best-first (``sort``) or in input order."""
    contrastive: bool = True
    """Token scores conditioned on the question (contrastive); False = plain surprisal."""
    restrictive_statement: str = RESTRICTIVE_STATEMENT
    """Appended to the question in the coarse ranking score."""
    rank_doc_tokens: int = Field(default=RANK_DOC_TOKENS, ge=16)
    """Documents are truncated to this many scorer tokens for ranking."""


def rank_documents(
    scorer: CausalLMScorer,
    documents: list[list[str]],
    questions: list[str],
    *,
    restrictive_statement: str = RESTRICTIVE_STATEMENT,
    max_doc_tokens: int = RANK_DOC_TOKENS,
    encodings: list[list[list[int]]] | None = None,
) -> list[np.ndarray]:
    """Per request, the mean NLL of question + statement given each document (one batched pass for all).

    ``encodings[r][d]``, when given, are the scorer token ids of ``documents[r][d]`` (saves re-tokenizing).
    """
    if encodings is None:
        encodings = [[ids for ids, _ in scorer.encode_batch(docs)] for docs in documents]
    sequences, owners = [], []
    for r, (docs, question) in enumerate(zip(documents, questions, strict=True)):
        continuation, _ = scorer.encode(SEPARATOR + question.strip() + " " + restrictive_statement)
        for d in range(len(docs)):
            sequences.append(encodings[r][d][:max_doc_tokens] + continuation)
            owners.append((r, d, len(continuation)))
    nll = scorer.token_nll(sequences, score_last=[n for _, _, n in owners])
    scores = [np.zeros(len(docs)) for docs in documents]
    for (r, d, n_cont), values in zip(owners, nll, strict=True):
        scores[r][d] = float(np.nanmean(values[-n_cont:]))
    return scores


def dynamic_rates(base_rate: float, count: int, delta: float) -> list[float]:
    if count == 1:
        return [min(base_rate, 1.0)]
    return [min(max(base_rate + delta * (1 - 2 * r / (count - 1)), 0.0), 1.0) for r in range(count)]


@register_method
class LongLLMLingua(CompressionMethod):
    name = "longllmlingua"
    options_model = LongLLMLinguaOptions
    needs_question = True
    summary = "Question-aware document ranking + contrastive iterative token pruning (needs a question)."

    def compress_batch(self, requests: list[PreparedRequest]) -> list[CompressionResult]:
        return run_grouped(
            requests,
            lambda p: p.options.scorer,
            lambda name, group: self._run(self.pool.scorer(name, field="options.scorer"), group),
        )

    def _run(self, scorer: CausalLMScorer, requests: list[PreparedRequest]) -> list[CompressionResult]:
        started = time.perf_counter()
        opts0: LongLLMLinguaOptions = requests[0].options  # the same for the whole group (run_grouped)
        indices = [p.nonempty_indices for p in requests]
        flat = [(r, i) for r, idx in enumerate(indices) for i in idx]
        encoded = scorer.encode_batch([requests[r].documents[i] for r, i in flat])
        encodings = dict(zip(flat, encoded, strict=True))
        scores = rank_documents(
            scorer,
            [[p.documents[i] for i in idx] for p, idx in zip(requests, indices, strict=True)],
            [p.request.question or "" for p in requests],
            restrictive_statement=opts0.restrictive_statement,
            max_doc_tokens=opts0.rank_doc_tokens,
            encodings=[[encodings[(r, i)][0] for i in idx] for r, idx in enumerate(indices)],
        )
        coarse_ms = (time.perf_counter() - started) * 1000
        plans, prefixes, rankings = [], [], []
        for r, (prepared, idx, doc_scores) in enumerate(zip(requests, indices, scores, strict=True)):
            opts: LongLLMLinguaOptions = prepared.options
            ranking = [idx[j] for j in np.argsort(doc_scores, kind="stable")]
            doc_tokens = [0] * len(prepared.documents)
            for i, count in zip(idx, prepared.target.count_many([prepared.documents[i] for i in idx]), strict=True):
                doc_tokens[i] = count
            budget = prepared.context_budget()
            kept = keep_until_budget(ranking, doc_tokens, budget + opts.coarse_slack_tokens) if opts.coarse else ranking
            base_rate = min(1.0, budget / max(sum(doc_tokens[i] for i in kept), 1))
            rates = dict(zip(kept, dynamic_rates(base_rate, len(kept), opts.dynamic_ratio), strict=True))
            order = kept if opts.reorder == "sort" else sorted(kept)
            documents = [
                build_document(
                    encodings[(r, i)],
                    i,
                    prepared.documents[i],
                    rates[i],
                    protect=list(opts.protect),
                    force_tokens=list(opts.force_tokens),
                )
                for i in order
            ]
            plans.append(build_plan(scorer, documents))
            question_prefix = conditioning_prefix(scorer, prepared.request.question)
            plain_prefix = conditioning_prefix(scorer, prepared.request.instruction)
            prefixes.append([plain_prefix, question_prefix] if opts.contrastive else [plain_prefix])
            rankings.append(ranking)
        fine_started = time.perf_counter()
        score_plans(scorer, plans, prefixes, window=opts0.window, contrastive=opts0.contrastive)
        return finish_results(
            requests, plans, rankings, started=started, coarse_ms=coarse_ms, fine_started=fine_started
        )
