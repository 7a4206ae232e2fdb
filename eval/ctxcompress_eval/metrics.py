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

Loss breakdown (NQ): a prompt whose full context holds an answer but whose compressed context does not is a
loss, classified by :func:`loss_cause` (``gold_dropped``, ``pruned_in_gold``, ``other``).

Paired comparison: per example id, a system's ``answer_retained`` against a reference system's on the same
prompt; the mean difference, wins/losses and a paired bootstrap 95 % interval (:func:`paired_bootstrap`).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "LOSS_CAUSES",
    "PAIRED_REFERENCE",
    "SHORT_ANSWER_WORDS",
    "aggregate",
    "contains_answer",
    "loss_breakdown",
    "loss_cause",
    "normalize",
    "paired_bootstrap",
    "paired_comparison",
    "paired_stats",
    "prompt_metrics",
    "short_answers",
]

SHORT_ANSWER_WORDS = 5
_SPACE = re.compile(r"\s+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
LOSS_CAUSES = ("gold_dropped", "pruned_in_gold", "other")
PAIRED_REFERENCE = "anchor-longllmlingua"
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
_BOOTSTRAP_CELLS = 2_000_000  # resampled values drawn per numpy call


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


def loss_cause(
    *,
    answer_in_full: bool,
    answer_retained: bool,
    gold_kept: bool | None,
    answer_in_gold: bool,
    gold_answer_retained: bool,
) -> str | None:
    """Why a prompt lost its answer (None: not a loss, i.e. kept or never there).

    ``gold_kept`` is None when the kept documents are unknown (``other``); a dropped gold document is
    ``gold_dropped``; a kept one whose kept text lost an answer its full text had is ``pruned_in_gold``.
    """
    if not answer_in_full or answer_retained:
        return None
    if gold_kept is None:
        return "other"
    if not gold_kept:
        return "gold_dropped"
    return "pruned_in_gold" if answer_in_gold and not gold_answer_retained else "other"


def loss_breakdown(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Losses by cause over the rows whose full context holds an answer (None: no such rows).

    ``fractions`` are shares of the lost prompts; ``loss_rate`` = lost / prompts with the answer in full.
    """
    eligible = [r for r in rows if not r.get("error") and r.get("answer_in_full")]
    if not eligible:
        return None
    lost = [r["loss"] for r in eligible if r.get("loss")]
    counts = {cause: lost.count(cause) for cause in LOSS_CAUSES}
    return {
        "n_answer_in_full": len(eligible),
        "n_lost": len(lost),
        "loss_rate": round(len(lost) / len(eligible), 4),
        "counts": counts,
        "fractions": {cause: round(k / len(lost), 4) if lost else None for cause, k in counts.items()},
    }


def paired_bootstrap(
    diffs: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of paired ``diffs`` (example indices drawn with replacement)."""
    values = np.asarray(diffs, dtype=np.float64)
    n = len(values)
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, _BOOTSTRAP_CELLS // n)
    for start in range(0, resamples, step):
        size = min(step, resamples - start)
        means[start : start + size] = values[rng.integers(0, n, size=(size, n))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return round(float(low), 4), round(float(high), 4)


def paired_stats(
    pairs: Sequence[tuple[bool, bool]], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict[str, Any]:
    """``(method kept, reference kept)`` pairs → retentions, difference, wins/losses and its 95 % interval."""
    method = np.array([float(a) for a, _ in pairs])
    reference = np.array([float(b) for _, b in pairs])
    diffs = method - reference
    n = len(pairs)
    ci = paired_bootstrap(diffs, resamples=resamples, seed=seed)
    return {
        "n": n,
        "retention": round(float(method.mean()), 4) if n else None,
        "reference_retention": round(float(reference.mean()), 4) if n else None,
        "diff": round(float(diffs.mean()), 4) if n else None,
        "wins": int((diffs > 0).sum()),
        "losses": int((diffs < 0).sum()),
        "ci95": list(ci) if ci else None,
    }


def _by_system(rows: Sequence[dict[str, Any]], key: str) -> dict[tuple[str, float, str], dict[str, Any]]:
    """``(dataset, rate, method) → {id: row}`` of the rows with a value for ``key``."""
    out: dict[tuple[str, float, str], dict[str, Any]] = defaultdict(dict)
    for r in rows:
        if not r.get("error") and r.get(key) is not None:
            out[(r["dataset"], r["rate"], r["method"])][r["id"]] = r
    return out


def paired_comparison(
    rows: Sequence[dict[str, Any]],
    reference: str,
    *,
    key: str = "answer_retained",
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> list[dict[str, Any]]:
    """Every system against ``reference`` per (dataset, rate), paired by example id; also per gold position."""
    systems = _by_system(rows, key)
    out = []
    for (dataset, rate, method), mine in systems.items():
        theirs = systems.get((dataset, rate, reference))
        if method == reference or not theirs:
            continue
        ids = sorted(set(mine) & set(theirs))
        if not ids:
            continue
        record = {"dataset": dataset, "rate": rate, "method": method, "reference": reference}
        record |= paired_stats([(mine[i][key], theirs[i][key]) for i in ids], resamples=resamples, seed=seed)
        positions = sorted({mine[i]["position"] for i in ids if mine[i].get("position") is not None})
        if positions:
            record["by_position"] = {
                str(p): paired_stats(
                    [(mine[i][key], theirs[i][key]) for i in ids if mine[i].get("position") == p],
                    resamples=resamples,
                    seed=seed,
                )
                for p in positions
            }
        out.append(record)
    return out
