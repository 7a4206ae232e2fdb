"""The profile batch: one batch as large as the serving limits allow, run at start-up on each GPU.

PyTorch's caching allocator keeps the largest blocks a process ever used, so without this a GPU's memory steps up
whenever traffic first forms a larger batch (one H200, 10 workers: 38 GB under 128 callers, then 93 GB within
20 s of a 2x overload). Running the largest batch once before the service reports ready reserves that peak at
start, so memory stays level under load and a GPU too small for the configured limits fails at start-up rather
than under traffic (vLLM's ``profile_run`` does the same with its largest batch).

The batch fills ``max_batch_tokens`` with requests shaped like retrieval traffic: 20 passages of ~150 tokens
each (~3,000 tokens per request; fewer requests than ``max_batch_requests`` when the tokens run out first). The
shape matters: on one H200 (hybrid, random weights) 22 NQ requests of ~2,900 tokens allocated 2.97 GiB at their
peak, 32 requests of ~1,900 tokens holding as many tokens only 1.91 GiB (``eval/device/memory_profile.py``).
Every passage is distinct filler text: recurring chunks would be answered from the chunk cache and the passes
would be smaller than real traffic's.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["DOCUMENT_WORDS", "profile_batch"]

DOCUMENT_WORDS = 105
"""Words per filler passage (~150 tokens of a BPE tokenizer, like a retrieved passage)."""
DOCUMENTS_PER_REQUEST = 20
"""Passages per request (a RAG prompt's retrieved chunks; NQ's 20-document setting)."""

_VOCABULARY = (
    "river city council record season league album station harbour valley county railway bridge island museum "
    "century battle treaty election governor bishop village mountain festival novel theatre university company "
    "engine aircraft species forest coast district parliament cathedral castle canal lake desert province market "
    "north south east west early late first second third major minor annual national regional ancient modern "
    "built opened founded named moved won lost signed released recorded served crossed measured restored"
).split()


def _document(rng: random.Random, number: int) -> str:
    words = [rng.choice(_VOCABULARY) for _ in range(DOCUMENT_WORDS)]
    sentences = [" ".join(words[i : i + 15]).capitalize() for i in range(0, DOCUMENT_WORDS, 15)]
    sentences = [f"{sentence} in {1800 + rng.randrange(220)}." for sentence in sentences]
    return f"Entry {number}. " + " ".join(sentences)


def profile_batch(
    method: str, *, requests: int, tokens: int, count_tokens: Callable[[dict], int], seed: int = 0
) -> list[dict]:
    """Requests of ``method`` whose origin tokens (``count_tokens``) sum to at most ``tokens``: as many as fit, up
    to ``requests``, each of :data:`DOCUMENTS_PER_REQUEST` distinct filler passages (fewer if even one request of
    that size would not fit), budget rate 0.25 as in the benchmarks."""
    rng = random.Random(seed)
    question = "Which river crossed the county?"
    passage_tokens = max(1, count_tokens({"method": method, "question": question, "documents": [_document(rng, 0)]}))
    per_request = max(1, min(DOCUMENTS_PER_REQUEST, tokens // passage_tokens))
    count = max(1, min(requests, tokens // (per_request * passage_tokens)))
    batch = []
    for index in range(count):
        documents = [_document(rng, index * per_request + i) for i in range(per_request)]
        batch.append({"method": method, "question": question, "documents": documents, "budget": {"rate": 0.25}})
    return batch
