"""LLMLingua (Jiang et al., EMNLP 2023, arXiv:2310.05736): perplexity-based coarse-to-fine prompt compression.

1. Budget controller: instruction and question are kept whole; the documents ("demonstrations") share the rest
   of the budget.
2. Coarse, document level: documents are ranked by their perplexity under the small LM (higher perplexity =
   more information) and kept in that order until they hold the context budget plus a small slack
   (``coarse_slack_tokens``; the reference implementation's ``context_budget="+100"``). Kept documents stay in
   their original order.
3. Fine, token level: iterative token-level compression (see ``_token_pruning``), conditioned on the instruction
   and the compressed prefix, at one uniform rate calibrated to the target-token budget.
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import Field

from ctxcompress.engines.scorer import CausalLMScorer
from ctxcompress.methods._token_pruning import build_document, build_plan, finish_results, score_plans
from ctxcompress.methods.base import BaseOptions, CompressionMethod, register_method, run_grouped
from ctxcompress.prompting import SEPARATOR, PreparedRequest
from ctxcompress.text.protect import ProtectKind
from ctxcompress.types import CompressionResult

__all__ = ["LLMLingua", "LLMLinguaOptions"]


class LLMLinguaOptions(BaseOptions):
    scorer: str = "smollm2-135m"
    """Configured causal-LM name used for perplexity."""
    window: int = Field(default=200, ge=16, le=4096)
    """Tokens per iterative-compression window (the reference's ``iterative_size``)."""
    coarse: bool = True
    """Run the document-level filter before token pruning."""
    coarse_slack_tokens: int = Field(default=100, ge=0)
    """Documents are kept until they exceed the context budget by this many tokens."""
    protect: list[ProtectKind] = Field(default_factory=lambda: ["digits", "urls", "code", "json", "headers"])
    """Span kinds never pruned."""
    force_tokens: list[str] = Field(default_factory=list)
    """Literal strings never pruned."""


def keep_until_budget(order: list[int], doc_tokens: list[int], budget: int) -> list[int]:
    """The prefix of ``order`` whose documents first reach ``budget`` tokens (at least one document)."""
    kept, total = [], 0
    for index in order:
        if kept and total >= budget:
            break
        kept.append(index)
        total += doc_tokens[index]
    return kept


def conditioning_prefix(scorer: CausalLMScorer, text: str | None) -> list[int]:
    """BOS followed by ``text`` and a blank line: what the compressed context is conditioned on."""
    if not text or not text.strip():
        return list(scorer.bos_ids)
    ids, _ = scorer.encode(text + SEPARATOR)
    return list(scorer.bos_ids) + ids


@register_method
class LLMLingua(CompressionMethod):
    name = "llmlingua"
    options_model = LLMLinguaOptions
    summary = "Perplexity-based coarse document filter + iterative token pruning (question-agnostic)."

    def compress_batch(self, requests: list[PreparedRequest]) -> list[CompressionResult]:
        return run_grouped(
            requests,
            lambda p: p.options.scorer,
            lambda name, group: self._run(self.pool.scorer(name, field="options.scorer"), group),
        )

    def _run(self, scorer: CausalLMScorer, requests: list[PreparedRequest]) -> list[CompressionResult]:
        started = time.perf_counter()
        docs = [(r, i) for r, p in enumerate(requests) for i in p.nonempty_indices]
        encodings = dict(zip(docs, scorer.encode_batch([requests[r].documents[i] for r, i in docs]), strict=True))
        # Perplexity only matters where the coarse filter has a choice (several documents).
        ranked = [key for key in docs if requests[key[0]].options.coarse and len(requests[key[0]].nonempty_indices) > 1]
        nll = scorer.token_nll([encodings[key][0] for key in ranked])
        perplexity: dict[tuple[int, int], float] = dict.fromkeys(docs, 0.0)
        for key, values in zip(ranked, nll, strict=True):
            perplexity[key] = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
        coarse_ms = (time.perf_counter() - started) * 1000
        plans, prefixes, rankings = [], [], []
        for r, prepared in enumerate(requests):
            opts: LLMLinguaOptions = prepared.options
            indices = prepared.nonempty_indices
            ranking = sorted(indices, key=lambda i: -perplexity[(r, i)])
            doc_tokens = dict(
                zip(indices, prepared.target.count_many([prepared.documents[i] for i in indices]), strict=True)
            )
            budget = prepared.context_budget()
            if opts.coarse:
                tokens_list = [doc_tokens.get(i, 0) for i in range(len(prepared.documents))]
                kept = sorted(keep_until_budget(ranking, tokens_list, budget + opts.coarse_slack_tokens))
            else:
                kept = indices
            kept_tokens = sum(doc_tokens[i] for i in kept)
            rate = min(1.0, budget / max(kept_tokens, 1))
            documents = [
                build_document(
                    encodings[(r, i)],
                    i,
                    prepared.documents[i],
                    rate,
                    protect=list(opts.protect),
                    force_tokens=list(opts.force_tokens),
                )
                for i in kept
            ]
            plans.append(build_plan(scorer, documents))
            prefixes.append([conditioning_prefix(scorer, prepared.request.instruction)])
            rankings.append(ranking)
        fine_started = time.perf_counter()
        window = requests[0].options.window  # the same for the whole group (run_grouped)
        score_plans(scorer, plans, prefixes, window=window, contrastive=False)
        return finish_results(
            requests, plans, rankings, started=started, coarse_ms=coarse_ms, fine_started=fine_started
        )
