"""Token-budget batch planning (after HF text-embeddings-inference's queue).

A batch is priced by its *padded* cost, ``longest sequence × number of sequences``, and capped by
``max_padded_tokens`` (and optionally a request count). Inputs are sorted longest-first so sequences of similar
length share a batch and little compute is wasted on padding; callers restore input order from the indices.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["plan_batches"]


def plan_batches(
    lengths: Sequence[int], *, max_padded_tokens: int, max_batch_size: int | None = None
) -> list[list[int]]:
    """Group input indices into batches whose padded cost fits ``max_padded_tokens``.

    A single input longer than the cap gets a batch of its own. Returns index lists, longest batch first.

    Example:
        >>> plan_batches([5, 100, 7, 90], max_padded_tokens=200)
        [[1, 3], [2, 0]]
    """
    if max_padded_tokens <= 0:
        raise ValueError("max_padded_tokens must be positive")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        too_costly = max(longest, 1) * (len(current) + 1) > max_padded_tokens
        too_many = max_batch_size is not None and len(current) >= max_batch_size
        if current and (too_costly or too_many):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
