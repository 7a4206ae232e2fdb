"""Lexical relevance: Okapi BM25 of a question against the texts of one request.

BM25 (Robertson & Zaragoza 2009): score(q, d) = sum over query terms t of
``idf(t) * f(t, d) * (k1 + 1) / (f(t, d) + k1 * (1 - b + b * |d| / avgdl))`` with
``idf(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5))``. The collection is the request's own texts, so no index
is needed. Exact-match evidence (names, numbers, rare words of the question) is what embedding similarity
and small-LM likelihood miss most often, which is why it is fused with them rather than used alone.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = ["bm25_scores", "terms"]

_TERM = re.compile(r"\w+", re.UNICODE)
# Function words carry no evidence; a short fixed list (English) is enough for BM25 over one request.
_STOPWORDS = frozenset(
    "a an and are as at be been but by did do does for from had has have he her his how i in is it its of on or "
    "she that the their them they this to was we were what when where which who whom whose why will with you".split()
)


def terms(text: str) -> list[str]:
    """Lower-cased word terms without stopwords (CJK runs stay whole; numbers are terms)."""
    return [t for t in _TERM.findall(text.casefold()) if t not in _STOPWORDS]


def bm25_scores(query: str, texts: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """BM25 score of each of ``texts`` for ``query`` (zeros when the query has no terms)."""
    docs = [Counter(terms(t)) for t in texts]
    query_terms = set(terms(query))
    scores = np.zeros(len(docs))
    if not docs or not query_terms:
        return scores
    lengths = np.array([sum(d.values()) for d in docs], dtype=np.float64)
    average = max(float(lengths.mean()), 1.0)
    for term in query_terms:
        counts = np.array([d.get(term, 0) for d in docs], dtype=np.float64)
        having = int((counts > 0).sum())
        if not having:
            continue
        idf = math.log(1 + (len(docs) - having + 0.5) / (having + 0.5))
        scores += idf * counts * (k1 + 1) / (counts + k1 * (1 - b + b * lengths / average))
    return scores
