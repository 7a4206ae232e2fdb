"""Scored text units (sentences or words) and budget selection shared by CPC, TCRA-semantic and LLMLingua-2.

A document is cut into *units* whose character spans cover it without gaps (each unit carries its trailing
whitespace), so keeping a subset of units and joining them in order rebuilds a faithful, shorter document.
Methods give every unit a score (``inf`` = protected). :func:`keep_best_units` ranks the units of all documents
of one request together (one global threshold, i.e. a percentile over the whole request) and binary-searches the
number kept so the assembled prompt is the largest not above the target-token budget. Optionally the first unit
that no longer fits is added back word by word, to land close under the budget with sentence-sized units.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ctxcompress.engines.chunk_cache import ChunkCache, text_key
from ctxcompress.prompting import PreparedRequest
from ctxcompress.text.protect import protected_spans
from ctxcompress.text.sentences import split_sentences_with_spans
from ctxcompress.types import KeptDocument

__all__ = [
    "ScoredDocument",
    "header_end",
    "keep_best_units",
    "largest_fitting",
    "overlaps",
    "question_entities",
    "sentence_units",
    "word_spans",
]

# A CJK character (ideograph, kana, hangul, CJK punctuation, full-width form) is a word of its own; anything
# else runs to the next whitespace or CJK character.
CJK_CHARS = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
_WORD = re.compile(f"[{CJK_CHARS}]|[^\\s{CJK_CHARS}]+")
_ENTITY = re.compile(r"[A-Z][\w'’.-]*\w|[A-Z]")


def word_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans of the words of ``text[start:end]``, each extended to the next word's start.

    Words are whitespace-separated; CJK characters are words one by one.

    The first span starts at ``start`` and the last ends at ``end``, so the spans cover the range without gaps.
    """
    end = len(text) if end is None else end
    starts = [m.start() + start for m in _WORD.finditer(text[start:end])]
    if not starts:
        return []
    starts[0] = start
    bounds = [*starts, end]
    return [(bounds[i], bounds[i + 1]) for i in range(len(starts))]


def overlaps(spans: list[tuple[int, int]], protected: list[tuple[int, int]]) -> np.ndarray:
    """Bool per span: does it overlap any protected span (ignoring its leading/trailing whitespace)?"""
    hit = np.zeros(len(spans), dtype=bool)
    if not protected or not spans:
        return hit
    starts = np.array([s for s, _ in spans])
    ends = np.array([e for _, e in spans])
    for p_start, p_end in protected:
        hit |= (starts < p_end) & (ends > p_start)
    return hit


def question_entities(question: str | None) -> list[str]:
    """Capitalised words of the question (its first word excepted): names the context must keep verbatim."""
    if not question:
        return []
    words = _ENTITY.findall(question)
    first = _WORD.search(question)
    if first and words and first.group(0).startswith(words[0]):
        words = words[1:]
    return sorted({w for w in words if len(w) > 1})


def protected_mask(text: str, spans: list[tuple[int, int]], kinds: list[str], force: list[str]) -> np.ndarray:
    """Units of ``text`` overlapping a protected span (:func:`ctxcompress.text.protected_spans`)."""
    if not kinds and not force:
        return np.zeros(len(spans), dtype=bool)
    return overlaps(spans, protected_spans(text, kinds=kinds, force_tokens=force))


@dataclass
class ScoredDocument:
    """One document of a request with its units and their scores (higher = kept first; ``inf`` = protected).

    ``header_end`` > 0 marks ``text[:header_end]`` as the document's source header (``Document [3](Title: …)``):
    it is not a unit; it leads the kept text whenever any unit of the document is kept.
    """

    index: int
    text: str
    spans: list[tuple[int, int]]
    scores: np.ndarray
    header_end: int = 0

    def text_of(self, keep: np.ndarray, partial: tuple[int, int] | None = None) -> str:
        """Kept units joined in order; ``partial=(unit, n_words)`` adds that unit's first words."""
        pieces = []
        for u, (start, end) in enumerate(self.spans):
            if keep[u]:
                pieces.append(self.text[start:end])
            elif partial is not None and partial[0] == u:
                words = word_spans(self.text, start, end)[: partial[1]]
                if words:
                    pieces.append(self.text[words[0][0] : words[-1][1]].rstrip() + " ")
        body = "".join(pieces)
        if self.header_end and body.strip():
            return self.text[: self.header_end].rstrip() + " " + body.lstrip()
        return body


def header_end(text: str) -> int:
    """End of the document's leading source header (``protected_spans(kind="headers")``), or 0."""
    spans = protected_spans(text, kinds=["headers"])
    return spans[0][1] if spans and spans[0][0] == len(text) - len(text.lstrip()) else 0


UNIT_CACHE_BYTES = 16 * 2**20
# Sentence units per (chunk, language): question-independent, so recurring chunks skip Punkt (a third of a cached
# hybrid request's time on CPU, eval/results/host_profile/).
_unit_cache = ChunkCache(UNIT_CACHE_BYTES, lambda value: 120 + 72 * len(value[1]))


def sentence_units(text: str, language: str) -> tuple[int, list[tuple[int, int]]]:
    """``(header_end, sentence spans after the header)``: the header is never a sentence of its own."""
    cached = cached_sentence_units(text, language)
    return cached if cached is not None else split_sentence_units(text, language)


def split_sentence_units(text: str, language: str) -> tuple[int, list[tuple[int, int]]]:
    """:func:`sentence_units` split now (Punkt) and cached, without asking the cache first."""
    end = header_end(text)
    body = split_sentences_with_spans(text[end:], language)
    spans = [(start + end, stop + end) for start, stop in body]
    _unit_cache.put(text_key(text, "sentence_units", language), (end, tuple(spans)))
    return end, spans


def sentence_unit_cache() -> ChunkCache:
    """The process's cache of sentence units per chunk (for measurements that need it cold)."""
    return _unit_cache


def cached_sentence_units(text: str, language: str) -> tuple[int, list[tuple[int, int]]] | None:
    """:func:`sentence_units` when the chunk's units are cached, else None (no sentence splitting)."""
    cached = _unit_cache.get(text_key(text, "sentence_units", language))
    return None if cached is None else (cached[0], list(cached[1]))


def largest_fitting(count: int, fits: Callable[[int], bool], guess: int | None = None) -> int:
    """The largest ``k`` in ``[0, count]`` with ``fits(k)`` (``fits`` assumed monotone; 0 when none fits).

    Without ``guess``: binary search (~log2(count) calls). With one: exponential search outward from it, then
    binary search inside the bracket, so a guess within a few steps of the answer costs 2-4 calls."""
    if guess is None:
        low, high = 0, count
    else:
        guess = min(max(guess, 0), count)
        step = 1
        if guess == 0 or fits(guess):
            low, high = guess, count  # fits(low); the answer is in [low, high]
            while low < high:
                probe = min(low + step, high)
                if not fits(probe):
                    high = probe - 1
                    break
                low, step = probe, step * 2
        else:
            low, high = 0, guess - 1  # not fits(guess): the answer is below it
            while low < high:
                probe = max(high - step + 1, low)
                if fits(probe):
                    low = probe
                    break
                high, step = probe - 1, step * 2
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


FILL_TRIES = 64  # units (or protected spans) tried after the best-first prefix no longer fits
MIN_SHARE = 0.95  # results land within [95%, 100%] of the budget


def _texts_of(
    docs: list[ScoredDocument],
    flat_doc: np.ndarray,
    flat_unit: np.ndarray,
    chosen: list,
    partial: tuple[int, int, int] | None = None,
) -> list[str]:
    """Each document's text keeping the ``chosen`` flat units; ``partial=(doc, unit, n_words)`` adds a unit's
    first words."""
    keeps = [np.zeros(len(d.spans), dtype=bool) for d in docs]
    for j in chosen:
        keeps[int(flat_doc[j])][int(flat_unit[j])] = True
    return [
        d.text_of(keep, (partial[1], partial[2]) if partial is not None and partial[0] == i else None)
        for i, (d, keep) in enumerate(zip(docs, keeps, strict=True))
    ]


JOIN_SLACK = 3  # tokens a unit's count alone can exceed what it adds to a prompt (merges at its edges)


def _cannot_fit(prepared: PreparedRequest, doc: ScoredDocument, unit: int, opens_document: bool, spare: int) -> bool:
    """Whether keeping ``unit`` surely adds more than ``spare`` tokens to the prompt (with its header when it is
    the document's first kept unit): first from its words (a lower bound without encoding), else from its count."""
    start, end = doc.spans[unit]
    pieces = [doc.text[start:end]] + ([doc.text[: doc.header_end]] if opens_document and doc.header_end else [])
    if sum(prepared.target.at_least(piece) for piece in pieces) - JOIN_SLACK > spare:
        return True
    return sum(prepared.target.count(piece) for piece in pieces) - JOIN_SLACK > spare


def _guess_fitting(
    prepared: PreparedRequest,
    docs: list[ScoredDocument],
    order: np.ndarray,
    flat_doc: np.ndarray,
    flat_unit: np.ndarray,
) -> int:
    """How many of the best units (in ``order``) fit the budget, estimated from their characters at the input's
    own tokens per character (headers counted with a document's first unit): the exact search starts there."""
    if not len(order):
        return 0
    per_char = prepared.origin_tokens / max(len(prepared.origin_prompt), 1)
    lengths = np.array([docs[d].spans[u][1] - docs[d].spans[u][0] for d, u in zip(flat_doc, flat_unit, strict=True)])
    chars = lengths[order].astype(np.float64)
    ranked_docs = flat_doc[order]
    _, first = np.unique(ranked_docs, return_index=True)
    chars[first] += [docs[int(ranked_docs[i])].header_end for i in first]
    estimate = prepared.fixed_tokens + per_char * np.cumsum(chars)
    return int(np.searchsorted(estimate, prepared.target_tokens, side="right"))


def keep_best_units(
    prepared: PreparedRequest, docs: list[ScoredDocument], *, trim_words: bool = False, fill: bool = False
) -> list[KeptDocument]:
    """Keep the best-scoring units of all ``docs`` (one global ranking) so the prompt fits the budget.

    Documents keep their order in ``docs``; ties in score keep document and position order. After the longest
    best-first prefix that fits, ``fill`` adds the next-best *whole* units that still fit (up to
    :data:`FILL_TRIES` of them are tried), so the prompt lands close under the budget without cut sentences; only
    if that still leaves it under :data:`MIN_SHARE` of the budget, the best unit left is added cut at a word.
    When not even the best unit fits whole, it is kept cut at a word instead (lower-ranked units that happen to
    be short never push out the best evidence). ``trim_words`` adds the first unit that does not fit, cut at a
    word.
    """
    flat_doc = np.concatenate([np.full(len(d.spans), i) for i, d in enumerate(docs)]) if docs else np.zeros(0)
    flat_unit = np.concatenate([np.arange(len(d.spans)) for d in docs]) if docs else np.zeros(0)
    flat_score = np.nan_to_num(np.concatenate([d.scores for d in docs]), nan=-np.inf) if docs else np.zeros(0)
    order = np.argsort(-flat_score, kind="stable")
    budget = prepared.target_tokens

    def texts(k: int, partial: tuple[int, int, int] | None = None) -> list[str]:
        return _texts_of(docs, flat_doc, flat_unit, list(order[:k]), partial)

    k = largest_fitting(
        len(order),
        lambda n: prepared.count_prompt(texts(n)) <= budget,
        _guess_fitting(prepared, docs, order, flat_doc, flat_unit),
    )
    best = texts(k)
    if fill and k == 0:
        trim_words = True
    elif fill and k < len(order):
        chosen = list(order[:k])
        used = prepared.count_prompt(best)
        with_units = {int(flat_doc[j]) for j in chosen}
        for j in order[k + 1 : k + 1 + FILL_TRIES]:
            doc, unit = int(flat_doc[j]), int(flat_unit[j])
            if _cannot_fit(prepared, docs[doc], unit, doc not in with_units, budget - used):
                continue  # cannot fit: spare the exact count of the whole prompt
            candidate = _texts_of(docs, flat_doc, flat_unit, [*chosen, j])
            if (count := prepared.count_prompt(candidate)) <= budget:
                chosen.append(j)
                best, used = candidate, count
                with_units.add(doc)
        if used >= MIN_SHARE * budget:
            return [KeptDocument(index=d.index, text=t) for d, t in zip(docs, best, strict=True)]
        # Still short of the budget's lower edge: the best unit left, cut at a word, tops the prompt up.
        taken = set(chosen)
        order = np.array([*chosen, *(j for j in order[k:] if j not in taken)])
        k, trim_words = len(chosen), True
    if trim_words and k < len(order):
        doc, unit = int(flat_doc[order[k]]), int(flat_unit[order[k]])
        start, end = docs[doc].spans[unit]
        n_words = len(word_spans(docs[doc].text, start, end))
        m = largest_fitting(n_words, lambda n: prepared.count_prompt(texts(k, (doc, unit, n))) <= budget)
        if m:
            best = texts(k, (doc, unit, m))
    return [KeptDocument(index=d.index, text=t) for d, t in zip(docs, best, strict=True)]
