"""The profile batch: one batch as large as the serving limits allow, run at start-up on each GPU.

PyTorch's caching allocator grows a process's memory to the largest batch it has run, so without this a GPU's
memory steps up whenever traffic first forms a larger batch (one H200, 10 workers: 38 GB under 128 callers, then
93 GB within 20 s of a 2x overload). Running the largest batch once before the service reports ready takes that
peak at start: a GPU too small for the configured limits fails at start-up rather than under traffic, and later
batches fit in memory the process has held before (vLLM's ``profile_run`` does the same with its largest batch).
With growable segments (``serve`` sets them) unused memory can go back to the GPU under light load; it stays
within that peak.

The batch fills ``max_batch_tokens`` with requests shaped like retrieval traffic: 20 passages each, most of ~150
tokens and the first ~4x longer (~3,500 tokens per request; fewer requests than ``max_batch_requests`` when the
tokens run out first). The shape matters because a pass pads its rows to the longest one: real passages vary in
length, so the longest rows set the padded size and the first pass of a large batch fills ``max_pass_tokens``,
while equal filler passages would not. On one H200 (hybrid, random weights) batches of 22 NQ requests peaked at
2.97 GiB allocated, 32 equal filler requests holding as many tokens at 1.91 GiB, 21 of ~2,900 tokens at 1.59 GiB
(``eval/device/memory_profile.py``). Every passage is distinct filler text: recurring chunks would be answered
from the chunk cache and the passes would be smaller than real traffic's.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["DOCUMENT_WORDS", "profile_batch"]

DOCUMENT_WORDS = 105
"""Words per filler passage (~150 tokens of a BPE tokenizer, like a retrieved passage)."""
LONG_DOCUMENT_WORDS = 4 * DOCUMENT_WORDS
"""Words of each request's first passage (~600 tokens: a long row that the other rows of its pass pad to)."""
DOCUMENTS_PER_REQUEST = 20
"""Passages per request (a RAG prompt's retrieved chunks; NQ's 20-document setting)."""

_VOCABULARY = (
    "river city council record season league album station harbour valley county railway bridge island museum "
    "century battle treaty election governor bishop village mountain festival novel theatre university company "
    "engine aircraft species forest coast district parliament cathedral castle canal lake desert province market "
    "north south east west early late first second third major minor annual national regional ancient modern "
    "built opened founded named moved won lost signed released recorded served crossed measured restored"
).split()


def _document(rng: random.Random, number: int, words_count: int = DOCUMENT_WORDS) -> str:
    words = [rng.choice(_VOCABULARY) for _ in range(words_count)]
    sentences = [" ".join(words[i : i + 15]).capitalize() for i in range(0, words_count, 15)]
    sentences = [f"{sentence} in {1800 + rng.randrange(220)}." for sentence in sentences]
    return f"Entry {number}. " + " ".join(sentences)


def profile_batch(
    method: str, *, requests: int, tokens: int, count_tokens: Callable[[dict], int], seed: int = 0
) -> list[dict]:
    """Requests of ``method`` whose origin tokens (``count_tokens``) sum to at most ``tokens``: as many as
    fit, up to ``requests``, each of :data:`DOCUMENTS_PER_REQUEST` distinct filler passages, the first one long
    (one request of short passages when even one such request would not fit), budget rate 0.25 as in the
    benchmarks."""
    rng = random.Random(seed)
    question = "Which river crossed the county?"

    def request(documents: list[str]) -> dict:
        return {"method": method, "question": question, "documents": documents, "budget": {"rate": 0.25}}

    full = [_document(rng, 0, LONG_DOCUMENT_WORDS)] + [_document(rng, i) for i in range(1, DOCUMENTS_PER_REQUEST)]
    if count_tokens(request(full)) > tokens:  # limits too small for one retrieval-sized request
        passage_tokens = max(1, count_tokens(request(full[1:2])))
        return [request([_document(rng, i) for i in range(max(1, tokens // passage_tokens))])]
    batch, total = [request(full)], count_tokens(request(full))
    while len(batch) < requests:
        number = len(batch) * DOCUMENTS_PER_REQUEST
        documents = [_document(rng, number, LONG_DOCUMENT_WORDS)]
        candidate = request(documents + [_document(rng, number + i) for i in range(1, DOCUMENTS_PER_REQUEST)])
        total += count_tokens(candidate)
        if total > tokens:
            break
        batch.append(candidate)
    return batch
