"""TCRA-LLM summarization compression (Liu et al. 2023, arXiv:2310.15556, "TCRA-LLM: Token Compression
Retrieval Augmented Large Language Model for Inference Cost Reduction", §3.1).

1. Budget split: the context budget (target tokens, minus separators) is shared among the documents in
   proportion to their length; a document's share is converted to the generator's tokens with that document's
   own target/generator token ratio and becomes its ``max_new_tokens``.
2. Summaries: every document of every request is summarized in one batched generation pass, by a seq2seq model
   (T5/BART family; T5 gets its ``summarize:`` prefix) or an instruct causal LM prompted to summarize
   (default: the embedded SmolLM2-135M-Instruct, chat template). With a question, the causal-LM prompt asks to
   keep what helps answer it.
3. Faithfulness guard (``faithful``, on by default; ``methods/summary_guard.py``): summary sentences whose
   numbers or names the document does not contain, or whose content words are mostly new, are dropped; a
   summary with nothing left falls back to the document's own leading sentences (extractive) within its share.
4. Length guard: a summary longer than its share is cut at its last sentence boundary that fits (at a word
   boundary if its first sentence does not fit); if the assembled prompt still exceeds the budget, the longest
   summaries lose their last words until it fits. Summaries may be shorter than the budget (the generator stops
   when it is done); they never exceed it.
"""

from __future__ import annotations

import math
import time

from pydantic import Field

from ctxcompress.engines.generator import Generator
from ctxcompress.methods._units import word_spans
from ctxcompress.methods.base import BaseOptions, CompressionMethod, register_method, run_grouped
from ctxcompress.methods.summary_guard import supported_summary
from ctxcompress.prompting import SEPARATOR, PreparedRequest
from ctxcompress.text.sentences import split_sentences_with_spans
from ctxcompress.text.tokens import TargetTokenizer
from ctxcompress.types import CompressionResult, KeptDocument

__all__ = ["TCRASummary", "TCRASummaryOptions", "fit_summary", "summary_prompt"]


class TCRASummaryOptions(BaseOptions):
    generator: str = "smollm2-135m"
    """Configured seq2seq or instruct causal-LM name."""
    max_new_tokens: int = Field(default=256, ge=1, le=2048)
    """Cap on generated tokens per document."""
    question_focus: bool = True
    """With a question, ask the (causal) generator to keep what helps answer it."""
    language: str = "english"
    """Punkt sentence-splitter language (for the guards)."""
    faithful: bool = True
    """Drop summary sentences the document does not support; fall back to its leading sentences when none is."""


def summary_prompt(generator: Generator, document: str, words: int, question: str | None) -> str:
    """The generator input for one document."""
    if generator.is_seq2seq:
        model_type = getattr(generator.model.config, "model_type", "")
        return f"summarize: {document}" if model_type in ("t5", "mt5", "umt5", "longt5") else document
    # Asking to *mention* relevant details (not to answer) keeps small models from answering the question with
    # facts the document does not hold.
    focus = f' Mention details relevant to "{question.strip()}" if the document has any.' if question else ""
    return (
        f"Summarize this document in at most {words} words, using only facts it states (names, numbers, "
        f"dates).{focus}\n\n{document.strip()}"
    )


def fit_summary(summary: str, share: int, target: TargetTokenizer, language: str) -> str:
    """``summary`` cut at the last sentence (else word) boundary that keeps it within ``share`` tokens."""
    summary = summary.strip()
    if target.count(summary) <= share:
        return summary
    kept = ""
    for _, end in split_sentences_with_spans(summary, language):
        candidate = summary[:end].strip()
        if target.count(candidate) > share:
            break
        kept = candidate
    if kept:
        return kept
    return _cut_words(summary, share, target)


def _cut_words(text: str, share: int, target: TargetTokenizer) -> str:
    best = ""
    for _, end in word_spans(text):
        candidate = text[:end].strip()
        if target.count(candidate) > share:
            break
        best = candidate
    return best


@register_method
class TCRASummary(CompressionMethod):
    name = "tcra-summary"
    options_model = TCRASummaryOptions
    summary = "Summarizes each document to its share of the budget with a seq2seq or instruct LM (TCRA-LLM)."

    def compress_batch(self, requests: list[PreparedRequest]) -> list[CompressionResult]:
        return run_grouped(
            requests,
            lambda p: p.options.generator,
            lambda name, group: self._run(self.pool.generator(name, field="options.generator"), group),
        )

    def _run(self, generator: Generator, requests: list[PreparedRequest]) -> list[CompressionResult]:
        started = time.perf_counter()
        jobs: list[tuple[int, int, int]] = []  # (request, document index, share in target tokens)
        prompts: list[str] = []
        limits: list[int] = []
        for r, prepared in enumerate(requests):
            opts: TCRASummaryOptions = prepared.options
            indices = prepared.nonempty_indices
            lengths = {i: max(prepared.target.count(prepared.documents[i]), 1) for i in indices}
            separators = prepared.target.count(SEPARATOR) * (len(indices) - 1)
            available = max(prepared.context_budget() - separators, len(indices))
            total = sum(lengths.values())
            question = prepared.request.question if opts.question_focus else None
            for i in indices:
                share = max(1, math.floor(available * lengths[i] / total))
                ratio = generator.count(prepared.documents[i]) / lengths[i]
                limit = min(opts.max_new_tokens, max(1, math.ceil(share * ratio)))
                jobs.append((r, i, share))
                prompts.append(summary_prompt(generator, prepared.documents[i], max(1, share * 3 // 4), question))
                limits.append(limit)
        summaries = generator.generate(prompts, limits)
        generate_ms = (time.perf_counter() - started) * 1000
        results = []
        for r, prepared in enumerate(requests):
            opts = prepared.options
            kept = [
                [i, fit_summary(_faithful(s, prepared.documents[i], opts), share, prepared.target, opts.language)]
                for (owner, i, share), s in zip(jobs, summaries, strict=True)
                if owner == r
            ]
            while kept and prepared.count_prompt([t for _, t in kept]) > prepared.target_tokens:
                longest = max(range(len(kept)), key=lambda k: len(kept[k][1]))
                words = word_spans(kept[longest][1])
                kept[longest][1] = kept[longest][1][: words[-1][0]].strip() if len(words) > 1 else ""
                kept = [k for k in kept if k[1]]
            elapsed = time.perf_counter()
            results.append(
                prepared.result(
                    [KeptDocument(index=i, text=t) for i, t in kept],
                    timings_ms={"generate": round(generate_ms, 2), "total": round((elapsed - started) * 1000, 2)},
                )
            )
        return results


def _faithful(summary: str, document: str, options: TCRASummaryOptions) -> str:
    """The summary's supported sentences, or the document itself (cut to its share later) when none is."""
    if not options.faithful:
        return summary
    guarded = supported_summary(summary, document, options.language)
    return guarded.text or document
