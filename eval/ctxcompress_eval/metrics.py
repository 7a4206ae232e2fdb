"""Per-prompt metrics and their aggregation.

Per prompt (one :class:`~ctxcompress_eval.outputs.Output` of one example):

* ``answer_retained``: a gold answer string occurs in the compressed context (case-folded, whitespace runs
  collapsed to one space, on both sides).
* ``gold_answer_retained``: a gold answer occurs in what is kept of the gold document itself.
* ``gold_rank``: 0-based rank of the gold document in the method's coarse ranking (None: the method does not rank).
* ``budget_error``: compressed_tokens / target_tokens - 1 (0 = exactly on budget, +0.1 = 10 % over).
* ``ratio``: origin_tokens / compressed_tokens.

Aggregates: means of the booleans, Recall@k, median and worst (largest magnitude, sign kept) budget error,
mean ratio, latency p50/p90 and tokens/s (origin tokens over summed latency).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "SHORT_ANSWER_WORDS",
    "aggregate",
    "contains_answer",
    "normalize",
    "prompt_metrics",
    "short_answers",
]

SHORT_ANSWER_WORDS = 5
_SPACE = re.compile(r"\s+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


def normalize(text: str) -> str:
    """Case-folded text with every whitespace run collapsed to one space."""
    return _SPACE.sub(" ", text.casefold()).strip()


def contains_answer(text: str | None, answers: Iterable[str]) -> bool:
    """True when any non-empty normalised answer occurs in the normalised ``text``."""
    if not text:
        return False
    haystack = normalize(text)
    return any(needle and needle in haystack for needle in (normalize(a) for a in answers))


def short_answers(answers: Iterable[str], max_words: int = SHORT_ANSWER_WORDS) -> list[str]:
    """Answers short enough for string matching: at most ``max_words`` words (CJK: 2 characters per word)."""
    out = []
    for answer in answers:
        words = len(answer.split())
        if _CJK.search(answer):
            words = max(words, math.ceil(len(answer.strip()) / 2))
        if answer.strip() and words <= max_words:
            out.append(answer)
    return out


def prompt_metrics(
    *,
    context: str,
    gold_text: str | None,
    answers: Sequence[str],
    gold_index: int | None,
    ranking: Sequence[int] | None,
    origin_tokens: int,
    compressed_tokens: int,
    target_tokens: int,
) -> dict[str, Any]:
    """Metrics of one compressed prompt (None where a metric does not apply)."""
    has_answers = bool(answers)
    gold_rank = None
    if ranking is not None and gold_index is not None:
        gold_rank = list(ranking).index(gold_index) if gold_index in ranking else len(ranking)
    return {
        "answer_retained": contains_answer(context, answers) if has_answers else None,
        "gold_answer_retained": (
            contains_answer(gold_text, answers) if has_answers and gold_index is not None else None
        ),
        "gold_rank": gold_rank,
        "budget_error": compressed_tokens / max(target_tokens, 1) - 1.0,
        "ratio": origin_tokens / max(compressed_tokens, 1),
    }


def _mean(values: list[Any]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return round(float(np.mean(kept)), 4) if kept else None


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate per-prompt rows (each: prompt_metrics fields + latency_ms, origin_tokens, error)."""
    ok = [r for r in rows if not r.get("error")]
    ranks = [r["gold_rank"] for r in ok if r.get("gold_rank") is not None]
    errors = [r["budget_error"] for r in ok]
    latencies = [float(r["latency_ms"]) for r in ok if r.get("latency_ms") is not None]
    seconds = sum(latencies) / 1000.0
    origin = sum(int(r["origin_tokens"]) for r in ok if r.get("latency_ms") is not None)
    return {
        "n": len(rows),
        "n_errors": len(rows) - len(ok),
        "answer_retention": _mean([r.get("answer_retained") for r in ok]),
        "gold_answer_retention": _mean([r.get("gold_answer_retained") for r in ok]),
        "recall_at_1": round(float(np.mean([k < 1 for k in ranks])), 4) if ranks else None,
        "recall_at_3": round(float(np.mean([k < 3 for k in ranks])), 4) if ranks else None,
        "budget_error_median": round(float(np.median(errors)), 4) if errors else None,
        "budget_error_worst": round(max(errors, key=abs), 4) if errors else None,
        "ratio": _mean([r["ratio"] for r in ok]),
        "origin_tokens_mean": _mean([r["origin_tokens"] for r in ok]),
        "compressed_tokens_mean": _mean([r["compressed_tokens"] for r in ok]),
        "latency_ms_p50": _percentile(latencies, 50),
        "latency_ms_p90": _percentile(latencies, 90),
        "tokens_per_s": round(origin / seconds, 1) if seconds > 0 else None,
        "reader_accuracy": _mean([r.get("reader_correct") for r in ok]),
    }
