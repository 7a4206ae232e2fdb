"""Token-level pruning shared by LLMLingua and LongLLMLingua.

Algorithm (LLMLingua's iterative token-level compression, Jiang et al. 2023, §3.3):

1. The kept documents are tokenized with the scoring model's tokenizer and concatenated into one stream.
2. The stream is scored window by window (``CausalLMScorer.iterative_nll``): each window's tokens get their
   surprisal ``-log p(x_i | compressed prefix)``; inside the window every document keeps its planned share of
   tokens (highest score first) and only those tokens condition the next window. With a question, LongLLMLingua
   (Jiang et al. 2024, §4.2) scores each token contrastively: surprisal without the question minus surprisal with
   the question in front, so tokens the question makes predictable rank high.
3. Budget calibration: the planned per-document rates are in scorer tokens, but the budget is in the *target*
   tokenizer. A false-position search scales all rates by one factor until the assembled prompt's target-token count is
   the largest not above the budget. Selection is over *units*, whole words (tokens merged so no word and no
   multi-byte character is split: the reference keeps word pieces, e.g. "Röntgen" → "R"), and units
   overlapping protected spans (numbers, document headers…) are always kept.
"""

from __future__ import annotations

import functools
import itertools
import re
import time
from dataclasses import dataclass, field

import numpy as np

from ctxcompress.engines.scorer import CausalLMScorer, IterativePrompt, KeepRule
from ctxcompress.methods._units import CJK_CHARS, FILL_TRIES
from ctxcompress.prompting import SEPARATOR, PreparedRequest
from ctxcompress.text.protect import protected_spans
from ctxcompress.types import CompressionResult, KeptDocument

_CJK_CHAR = re.compile(f"[{CJK_CHARS}]")

__all__ = [
    "PrunableDocument",
    "PruningPlan",
    "build_plan",
    "finish_results",
    "keep_rule",
    "score_plans",
    "select_to_budget",
]


@dataclass
class PrunableDocument:
    """One document split into units (token groups that decode to whole characters)."""

    index: int
    text: str
    token_ids: list[int]
    token_unit: np.ndarray  # unit index of each token
    unit_spans: list[tuple[int, int]]
    unit_protected_span: np.ndarray  # per unit, index of the protected span it overlaps, or -1
    rate: float  # planned share of units to keep

    @functools.cached_property
    def unit_forced(self) -> np.ndarray:
        """Units that overlap a protected span (always kept while the spans fit the budget)."""
        return self.unit_protected_span >= 0

    @property
    def n_units(self) -> int:
        return len(self.unit_spans)

    @functools.cached_property
    def unit_texts(self) -> list[str]:
        return [self.text[s:e] for s, e in self.unit_spans]

    def text_of(self, keep_units: np.ndarray) -> str:
        return "".join(itertools.compress(self.unit_texts, keep_units.tolist()))


@dataclass
class PruningPlan:
    """Documents of one request in output order, concatenated into the scoring stream."""

    documents: list[PrunableDocument]
    stream: list[int]
    stream_doc: np.ndarray  # document position (in ``documents``) of each stream token, -1 for separators
    stream_offset: np.ndarray  # token index inside its document
    token_scores: list[np.ndarray] = field(default_factory=list)  # per document, filled by scoring


def _units(offsets: list[tuple[int, int]], text: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Group tokens into whole words: pruning keeps or drops a word, never a piece of one.

    A token opens a new unit when it starts at or after the furthest end reached by the tokens before it (so a
    multi-byte character split across byte tokens stays in one unit) *and* at a word start: after whitespace,
    on whitespace, or on/after a CJK character (each CJK character is a word, as in ``_units.word_spans``) —
    except right after a whitespace-only token, which leads the word after it (SmolLM2 splits " 1903" into " ",
    "1", "9", ...: kept alone, the digits of two numbers would run together).
    Unit spans run from their first token's start to the next unit's start, so they cover the text.
    """
    if not offsets:
        return np.zeros(0, dtype=np.int64), []
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    reach = np.maximum.accumulate(spans[:, 1])
    opens = np.empty(len(spans), dtype=bool)
    opens[0] = True
    opens[1:] = spans[1:, 0] >= reach[:-1]
    for t in np.flatnonzero(opens[1:]) + 1:
        start = int(spans[t, 0])
        here = text[start] if start < len(text) else " "
        before = text[start - 1] if start > 0 else " "
        previous = text[spans[t - 1, 0] : spans[t - 1, 1]]
        follows_blank = bool(previous) and previous.isspace()  # a whitespace token leads the word after it
        opens[t] = not follows_blank and (before.isspace() or here.isspace() or _is_cjk(here) or _is_cjk(before))
    token_unit = np.cumsum(opens) - 1
    starts = spans[opens, 0]
    starts[0] = 0
    bounds = np.append(starts, len(text)).tolist()
    return token_unit, list(zip(bounds[:-1], bounds[1:], strict=True))


def _is_cjk(char: str) -> bool:
    return bool(_CJK_CHAR.match(char))


def build_document(
    encoding: tuple[list[int], list[tuple[int, int]]],
    index: int,
    text: str,
    rate: float,
    *,
    protect: list[str],
    force_tokens: list[str],
) -> PrunableDocument:
    """Split ``text`` (tokenized as ``encoding``: ids and character offsets) into units; mark protected ones."""
    ids, offsets = encoding
    token_unit, unit_spans = _units(offsets, text)
    span_of_unit = np.full(len(unit_spans), -1, dtype=np.int64)
    spans = protected_spans(text, kinds=protect, force_tokens=force_tokens)
    if spans:
        starts = np.array([s for s, _ in unit_spans])
        ends = np.array([e for _, e in unit_spans])
        for number, (p_start, p_end) in reversed(list(enumerate(spans))):  # a unit over two spans joins the first
            span_of_unit[(starts < p_end) & (ends > p_start) & (ends > starts)] = number
    return PrunableDocument(index, text, ids, token_unit, unit_spans, span_of_unit, min(max(rate, 0.0), 1.0))


def build_plan(scorer: CausalLMScorer, documents: list[PrunableDocument]) -> PruningPlan:
    separator, _ = scorer.encode(SEPARATOR)
    stream: list[int] = []
    stream_doc: list[int] = []
    stream_offset: list[int] = []
    for position, doc in enumerate(documents):
        if position:
            stream += separator
            stream_doc += [-1] * len(separator)
            stream_offset += [0] * len(separator)
        stream += doc.token_ids
        stream_doc += [position] * len(doc.token_ids)
        stream_offset += list(range(len(doc.token_ids)))
    return PruningPlan(documents, stream, np.array(stream_doc), np.array(stream_offset))


def keep_rule(plan: PruningPlan, window: int) -> KeepRule:
    """The scorer's :class:`KeepRule` for ``plan``: separators and protected units always stay; inside each
    window every document keeps ``floor(rate * its tokens there + carry)`` tokens, the fraction carried to its
    next window so the document's overall share matches its rate."""
    n = len(plan.stream)
    group = plan.stream_doc.astype(np.int64)
    pinned = group < 0
    for position, doc in enumerate(plan.documents):
        here = np.flatnonzero(group == position)
        pinned[here] = doc.unit_forced[doc.token_unit[plan.stream_offset[here]]]
    take = np.zeros(n, dtype=np.int64)
    carries = np.zeros(len(plan.documents))
    for start in range(0, n, window):
        docs = group[start : start + window]
        for position in np.unique(docs[docs >= 0]):
            here = start + np.flatnonzero(docs == position)
            wanted = plan.documents[position].rate * len(here) + carries[position]
            quota = int(np.floor(wanted))
            carries[position] = wanted - quota
            take[here] = max(quota - int(pinned[here].sum()), 0)
    return KeepRule(group=group, pinned=pinned, take=take)


def score_plans(
    scorer: CausalLMScorer,
    plans: list[PruningPlan],
    prefixes: list[list[list[int]]],
    *,
    window: int,
    contrastive: bool,
) -> None:
    """Fill ``plan.token_scores`` by iterative scoring of all plans in lock-step (one batch per step).

    ``prefixes[i]`` are plan i's conditioning prefixes: one for plain surprisal, two (without, with the
    question) for contrastive scores.
    """
    weights = (1.0, -1.0) if contrastive else (1.0,)
    prompts = [
        IterativePrompt(plan.stream, p, weights=weights, rule=keep_rule(plan, window))
        for plan, p in zip(plans, prefixes, strict=True)
    ]
    for plan, scores in zip(plans, scorer.iterative_nll(prompts, window=window), strict=True):
        plan.token_scores = [scores.score[plan.stream_doc == position] for position in range(len(plan.documents))]


def _unit_scores(doc: PrunableDocument, token_scores: np.ndarray) -> np.ndarray:
    scores = np.full(doc.n_units, -np.inf, dtype=np.float64)
    np.maximum.at(scores, doc.token_unit, token_scores.astype(np.float64))
    return scores


PROTECTED_SHARE = 0.5  # of the context budget, for protected spans when all of them would not fit


def select_to_budget(prepared: PreparedRequest, plan: PruningPlan) -> list[KeptDocument]:
    """Keep each document's highest-scoring units so the assembled prompt meets the target-token budget.

    Every document keeps ``round(alpha * rate * units)`` units (protected ones always). The prompt's
    target-token count is monotone and nearly linear in ``alpha``, so ``alpha`` is found by false position
    (Illinois variant) on exact counts: typically 3-6 tokenizer calls instead of ~30 for bisection. The result
    is the largest prompt found that does not exceed the budget.

    When the protected spans alone exceed the budget (a long document full of numbers), the best whole spans
    that fit :data:`PROTECTED_SHARE` of the context budget stay protected, the others are dropped whole (never
    cut), and the rest of the budget goes to the best other units as usual.
    """
    docs = plan.documents
    budget = prepared.target_tokens
    forced = [d.unit_forced for d in docs]
    dropped = [np.zeros(d.n_units, dtype=bool) for d in docs]
    if docs and prepared.count_prompt([d.text_of(f) for d, f in zip(docs, forced, strict=True)]) > budget:
        base = prepared.count_prompt([""] * len(docs))
        limit = base + int(PROTECTED_SHARE * max(budget - base, 0))
        forced = _affordable_spans(prepared, docs, plan.token_scores, limit)
        dropped = [d.unit_forced & ~f for d, f in zip(docs, forced, strict=True)]
    orders = []
    for doc, token_scores, must, banned in zip(docs, plan.token_scores, forced, dropped, strict=True):
        scores = _unit_scores(doc, token_scores)
        scores[must] = np.inf
        scores[banned] = -np.inf
        orders.append(np.argsort(-scores, kind="stable"))
    forced_counts = [int(f.sum()) for f in forced]

    def texts_at(alpha: float) -> list[str]:
        texts = []
        for doc, order, count_forced, banned in zip(docs, orders, forced_counts, dropped, strict=True):
            count = max(min(doc.n_units, int(round(alpha * doc.rate * doc.n_units))), count_forced)
            keep = np.zeros(doc.n_units, dtype=bool)
            keep[order[:count]] = True
            texts.append(doc.text_of(keep & ~banned))
        return texts

    budget = prepared.target_tokens
    tolerance = max(2, int(0.005 * budget))
    low, high = 0.0, max(1.0 / max(d.rate, 1e-6) for d in docs) if docs else 1.0
    best = texts_at(low)
    low_count = prepared.count_prompt(best)
    if low_count > budget:  # even the affordable spans do not fit (instruction + question fill the budget)
        return [KeptDocument(index=d.index, text="") for d in docs]
    high_texts = texts_at(high)
    high_count = prepared.count_prompt(high_texts)
    if high_count <= budget:
        best = high_texts
    else:
        f_low, f_high = float(low_count - budget), float(high_count - budget)
        side = 0
        for _ in range(40):
            if budget - low_count <= tolerance or high - low < 1e-6:
                break
            alpha = low - f_low * (high - low) / (f_high - f_low)
            alpha = min(max(alpha, low + 1e-6), high - 1e-6)
            candidate = texts_at(alpha)
            count = prepared.count_prompt(candidate)
            if count <= budget:
                low, low_count, best, f_low = alpha, count, candidate, float(count - budget)
                if side == 1:  # Illinois step: halve the stale end's weight so the bracket keeps shrinking
                    f_high /= 2
                side = 1
            else:
                high, f_high = alpha, float(count - budget)
                if side == -1:
                    f_low /= 2
                side = -1
    return [KeptDocument(index=doc.index, text=text) for doc, text in zip(docs, best, strict=True)]


def _affordable_spans(
    prepared: PreparedRequest, docs: list[PrunableDocument], token_scores: list[np.ndarray], limit: int
) -> list[np.ndarray]:
    """Per document, the units of the protected spans kept when all of them would not fit: spans ranked by their
    best unit's score across all documents, the longest best-first prefix whose prompt fits ``limit`` tokens, then
    each further span (up to :data:`FILL_TRIES`) that still fits. A span is kept whole or not at all."""
    spans = []  # (score, document position, span id)
    for position, (doc, scores) in enumerate(zip(docs, token_scores, strict=True)):
        span_of_unit = doc.unit_protected_span
        unit_scores = _unit_scores(doc, scores)
        for span in np.unique(span_of_unit[span_of_unit >= 0]):
            spans.append((float(unit_scores[span_of_unit == span].max()), position, int(span)))
    spans.sort(key=lambda item: -item[0])  # stable: equal scores keep document order

    def masks_with(chosen: list[tuple[float, int, int]]) -> list[np.ndarray]:
        keep = [np.zeros(d.n_units, dtype=bool) for d in docs]
        for _, position, span in chosen:
            keep[position] |= docs[position].unit_protected_span == span
        return keep

    def fits(chosen: list[tuple[float, int, int]]) -> bool:
        masks = masks_with(chosen)
        return prepared.count_prompt([d.text_of(m) for d, m in zip(docs, masks, strict=True)]) <= limit

    low, high = 0, len(spans)  # the empty choice fits; find the longest prefix that fits
    while low < high:
        middle = (low + high + 1) // 2
        if fits(spans[:middle]):
            low = middle
        else:
            high = middle - 1
    chosen = spans[:low]
    for span in spans[low + 1 : low + 1 + FILL_TRIES]:
        if fits([*chosen, span]):
            chosen.append(span)
    return masks_with(chosen)


def finish_results(
    requests: list[PreparedRequest],
    plans: list[PruningPlan],
    rankings: list[list[int]],
    *,
    started: float,
    coarse_ms: float,
    fine_started: float,
) -> list[CompressionResult]:
    """Fit each scored plan to its budget and build the results (timings in ms since ``started``)."""
    results = []
    for prepared, plan, ranking in zip(requests, plans, rankings, strict=True):
        kept = select_to_budget(prepared, plan)
        elapsed = time.perf_counter()
        timings = {
            "coarse": round(coarse_ms, 2),
            "fine": round((elapsed - fine_started) * 1000, 2),
            "total": round((elapsed - started) * 1000, 2),
        }
        results.append(prepared.result(kept, ranking=ranking, timings_ms=timings))
    return results
