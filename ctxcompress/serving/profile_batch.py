"""The profile batch: one batch as large as the serving limits allow, run at start-up on each GPU.

PyTorch's caching allocator keeps the largest blocks a process ever used, so without this a GPU's memory steps up
whenever traffic first forms a larger batch (one H200, 10 workers: 38 GB under 128 callers, then 93 GB within
20 s of a 2x overload). Running the largest batch once before the service reports ready reserves that peak at
start, so memory stays level under load and a GPU too small for the configured limits fails at start-up rather
than under traffic (vLLM's ``profile_run`` does the same with its largest batch).

The batch is ``max_batch_requests`` requests that together hold ``max_batch_tokens`` origin tokens, each with
NQ-sized documents (~120 tokens) of deterministic filler text. Every document is distinct: recurring chunks would
be answered from the chunk cache and the passes would be smaller than real traffic's.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["DOCUMENT_WORDS", "profile_batch"]

DOCUMENT_WORDS = 90
"""Words per filler document (~120 tokens of a BPE tokenizer, like a retrieved passage)."""

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
    """``requests`` requests of ``method`` whose origin tokens (``count_tokens``) sum to about ``tokens``.

    Each request gets ``tokens // requests`` tokens' worth of distinct filler documents (sized from one measured
    request) and the benchmarks' budget, rate 0.25.
    """
    rng = random.Random(seed)
    per_request = max(1, tokens // requests)
    probe = {"method": method, "question": "Which river crossed the county?", "documents": [_document(rng, 0)]}
    documents_each = max(1, per_request // max(1, count_tokens(probe)))
    batch, number = [], 0
    for _ in range(requests):
        documents = [_document(rng, number + i) for i in range(documents_each)]
        number += documents_each
        batch.append({**probe, "documents": documents, "budget": {"rate": 0.25}})
    return batch
