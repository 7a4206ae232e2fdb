"""Faithfulness guard for generated summaries: keep only the sentences their source document supports.

A 135M-parameter generator writes fluent summaries that sometimes state what the document does not: it swaps in
a famous name ("Marie Curie" for a passage on Ramón y Cajal) or invents one. A summary sentence is *supported*
when every number and every capitalised name in it occurs in the source (case-insensitively, a word's first five
letters standing for its inflections) and at most half of its other content words are new (paraphrase is
allowed, invention is not). Unsupported sentences are dropped; when none is left, the caller falls back to the
document's own leading sentences (extractive). This is a lexical check after generation, in the spirit of the
entity-level faithfulness filters of summarization work (e.g. Nan et al. 2021, arXiv:2102.09130); it finds
unsupported *words*, so a wrong relation between supported words passes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ctxcompress.text.sentences import split_sentences_with_spans

__all__ = ["GuardedSummary", "supported_summary"]

_WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_STEM = 5
# Share of a sentence's ordinary content words that may be absent from the source (paraphrase).
MAX_NEW_WORD_SHARE = 0.5
# Function words, and the words summaries use to talk about the document itself.
_IGNORED = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor
    not now of off on once only or other our ours ourselves out over own same she should so some such than that
    the their theirs them themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself yourselves one two
    document documents text passage summary summarize summarized article mentions mentioned describes described
    discusses discussed states stated provides information details relevant question answer however additionally
    including include includes known well many several including""".split()
)


@dataclass(frozen=True)
class GuardedSummary:
    """The supported part of a summary (``text``; empty when nothing is supported) and how many sentences the
    guard dropped out of how many."""

    text: str
    dropped: int
    sentences: int


def _stem(word: str) -> str:
    return word.lower()[:_STEM]


def _support(source: str) -> tuple[set[str], set[str]]:
    """The source's word stems and numbers (digits only: '1,234' and '1234' match)."""
    stems = {_stem(w) for w in _WORD.findall(source)}
    numbers = {n.replace(",", "") for n in _NUMBER.findall(source)}
    return stems, numbers


def _is_supported(sentence: str, stems: set[str], numbers: set[str]) -> bool:
    if any(n.replace(",", "") not in numbers for n in _NUMBER.findall(sentence)):
        return False
    words = [w for w in _WORD.findall(sentence) if w.lower() not in _IGNORED and len(w) > 2]
    names = [w for w in words if w[0].isupper()]
    if any(_stem(w) not in stems for w in names):
        return False
    ordinary = [w for w in words if not w[0].isupper()]
    new = sum(_stem(w) not in stems for w in ordinary)
    return new <= MAX_NEW_WORD_SHARE * len(ordinary)


def supported_summary(summary: str, source: str, language: str = "english") -> GuardedSummary:
    """``summary`` without the sentences ``source`` does not support (original order and spacing kept)."""
    stems, numbers = _support(source)
    spans = split_sentences_with_spans(summary, language)
    kept = [summary[start:end].strip() for start, end in spans if _is_supported(summary[start:end], stems, numbers)]
    return GuardedSummary(text=" ".join(k for k in kept if k), dropped=len(spans) - len(kept), sentences=len(spans))
