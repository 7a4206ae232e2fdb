"""Baselines the methods are compared against (evaluation only; they are not product methods).

All share the methods' budget: ``rate`` × the original prompt's tokens in the target tokenizer (cl100k_base),
covering instruction + context + question, with prompt assembly and counting from :mod:`ctxcompress.prompting`.

* ``none``: the uncompressed prompt (ratio 1).
* ``truncate``: documents in input order while they fit, the next one cut at a target-token boundary.
* ``random``: sentences (Punkt) visited in a seeded random order and kept while they fit; kept sentences stay
  in input order. A "drop sentences at random" baseline (LLMLingua's "Sentence Selection" control).
* ``bm25``: documents ranked by BM25 (Okapi, rank-bm25) against the question, kept best-first while they fit,
  then the next one's leading sentences that fit (the retrieval baseline of LongLLMLingua, Table 1).
* ``minilm``: the same fill, documents ranked by cosine similarity of all-MiniLM-L6-v2 embeddings
  (sentence-transformers bi-encoder; LongLLMLingua's "SBERT" baseline).
"""

from __future__ import annotations

import random
import re
import time
from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import numpy as np

from ctxcompress.errors import CtxCompressError
from ctxcompress.methods.base import BaseOptions
from ctxcompress.pool import ModelPool
from ctxcompress.prompting import PreparedRequest, prepare
from ctxcompress.text import split_sentences
from ctxcompress.types import CompressionRequest, KeptDocument
from ctxcompress_eval.datasets import Example
from ctxcompress_eval.outputs import Output, from_result

__all__ = ["BASELINES", "Baseline", "fill_budget", "make_baseline", "query_of"]

_WORD = re.compile(r"\w+")
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


def query_of(example: Example) -> str:
    """The bare question used for ranking (NQ: without the ``Question:``/``Answer:`` frame)."""
    return str(example.meta.get("question") or example.question or example.instruction or "")


def _prepare(example: Example, rate: float) -> PreparedRequest:
    request = CompressionRequest.model_validate(example.request("baseline", rate))
    return prepare(request, BaseOptions)


def _prefix_that_fits(prepared: PreparedRequest, texts: list[str], units: list[str], joiner: str) -> str:
    """The longest prefix of ``units`` that, appended to ``texts``, keeps the prompt within budget."""
    lo, hi = 0, len(units)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if prepared.count_prompt([*texts, joiner.join(units[:mid])]) <= prepared.target_tokens:
            lo = mid
        else:
            hi = mid - 1
    return joiner.join(units[:lo]).strip()


def fill_budget(
    prepared: PreparedRequest, order: list[int], partial: Literal["tokens", "sentences"] | None
) -> list[KeptDocument]:
    """Whole documents in ``order`` while the prompt fits, then a prefix of the next one (``partial`` units)."""
    kept: list[KeptDocument] = []
    for index in order:
        text = prepared.documents[index]
        if not text.strip():
            continue
        texts = [k.text for k in kept]
        if prepared.count_prompt([*texts, text]) <= prepared.target_tokens:
            kept.append(KeptDocument(index=index, text=text))
            continue
        if partial == "tokens":
            ids = prepared.target.encode(text)
            units = [prepared.target.decode(ids[i : i + 1]) for i in range(len(ids))]
            piece = _prefix_that_fits(prepared, texts, units, "").rstrip("\ufffd")
        elif partial == "sentences":
            piece = _prefix_that_fits(prepared, texts, split_sentences(text), "")
        else:
            piece = ""
        if piece:
            kept.append(KeptDocument(index=index, text=piece))
        break
    return kept


class Baseline(ABC):
    """A baseline compressor evaluated with the same budget as the methods."""

    name: ClassVar[str]
    ranks: ClassVar[bool] = False

    def __init__(self, pool: ModelPool | None = None, *, seed: int = 0) -> None:
        self.pool = pool
        self.seed = seed

    @abstractmethod
    def select(
        self, example: Example, prepared: PreparedRequest, rate: float
    ) -> tuple[list[KeptDocument], list[int] | None]:
        """Kept documents (output order) and the ranking of all document indices (None: does not rank)."""

    def run(self, examples: list[Example], rate: float) -> list[Output]:
        outputs = []
        for example in examples:
            started = time.perf_counter()
            try:
                prepared = _prepare(example, rate)
                if prepared.fits_uncompressed():
                    result = prepared.unchanged()
                    ranking = None
                else:
                    kept, ranking = self.select(example, prepared, rate)
                    result = prepared.result(kept, ranking=ranking)
            except CtxCompressError as exc:
                outputs.append(Output(id=example.id, method=self.name, rate=rate, error=exc.message))
                continue
            latency = (time.perf_counter() - started) * 1000
            outputs.append(from_result(example.id, self.name, rate, result, latency))
        return outputs


class NoCompression(Baseline):
    name = "none"

    def select(self, example: Example, prepared: PreparedRequest, rate: float) -> tuple[list[KeptDocument], None]:
        return [KeptDocument(index=i, text=prepared.documents[i]) for i in prepared.nonempty_indices], None

    def run(self, examples: list[Example], rate: float) -> list[Output]:
        return super().run(examples, 1.0)


class Truncate(Baseline):
    name = "truncate"

    def select(self, example: Example, prepared: PreparedRequest, rate: float) -> tuple[list[KeptDocument], None]:
        return fill_budget(prepared, list(range(len(prepared.documents))), "tokens"), None


class RandomSentences(Baseline):
    name = "random"

    def select(self, example: Example, prepared: PreparedRequest, rate: float) -> tuple[list[KeptDocument], None]:
        units = [(d, s) for d in prepared.nonempty_indices for s in split_sentences(prepared.documents[d])]
        order = list(range(len(units)))
        random.Random(f"{self.seed}:{example.id}:{rate}").shuffle(order)
        sizes = prepared.target.count_many([s for _, s in units])
        budget = prepared.context_budget()
        chosen: list[int] = []
        used = 0
        for u in order:  # estimate with per-sentence counts, then correct exactly below
            if used + sizes[u] <= budget:
                chosen.append(u)
                used += sizes[u]

        def assemble(members: list[int]) -> list[KeptDocument]:
            by_doc: dict[int, list[str]] = {}
            for u in sorted(members):
                by_doc.setdefault(units[u][0], []).append(units[u][1])
            return [KeptDocument(index=d, text="".join(parts).strip()) for d, parts in by_doc.items()]

        while chosen and prepared.count_prompt([k.text for k in assemble(chosen)]) > prepared.target_tokens:
            chosen.pop()
        return assemble(chosen), None


def _tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; CJK runs become single characters (no spaces between CJK words)."""
    tokens = []
    for word in _WORD.findall(text.casefold()):
        tokens.extend(list(word) if _CJK_CHAR.search(word) else [word])
    return tokens


class _Ranker(Baseline):
    ranks = True

    @abstractmethod
    def scores(self, query: str, documents: list[str]) -> np.ndarray:
        """Relevance of each document to ``query`` (higher = better)."""

    def select(self, example: Example, prepared: PreparedRequest, rate: float) -> tuple[list[KeptDocument], list[int]]:
        indices = prepared.nonempty_indices
        scores = self.scores(query_of(example), [prepared.documents[i] for i in indices])
        ranking = [indices[j] for j in np.argsort(-scores, kind="stable")]
        return fill_budget(prepared, ranking, "sentences"), ranking


class BM25(_Ranker):
    name = "bm25"

    def scores(self, query: str, documents: list[str]) -> np.ndarray:
        from rank_bm25 import BM25Okapi

        corpus = [_tokenize(d) or ["<empty>"] for d in documents]
        return np.asarray(BM25Okapi(corpus).get_scores(_tokenize(query)), dtype=float)


class MiniLM(_Ranker):
    name = "minilm"
    model_name = "minilm-l6"

    def _encoder(self):  # noqa: ANN202 - a SentenceTransformer
        from sentence_transformers import SentenceTransformer

        pool = self.pool or ModelPool(device="cpu")
        self.pool = pool
        return pool.get(
            "eval-sentence-transformer",
            self.model_name,
            "sentence-encoder",
            lambda local, device: SentenceTransformer(local, device=str(device)),
        )

    def scores(self, query: str, documents: list[str]) -> np.ndarray:
        vectors = self._encoder().encode([query, *documents], normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors[1:] @ vectors[0], dtype=float)


BASELINES: dict[str, type[Baseline]] = {
    cls.name: cls for cls in (NoCompression, Truncate, RandomSentences, BM25, MiniLM)
}


def make_baseline(name: str, pool: ModelPool | None = None, *, seed: int = 0) -> Baseline:
    return BASELINES[name](pool, seed=seed)
