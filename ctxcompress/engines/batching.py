"""Token-budget batch planning (after HF text-embeddings-inference's queue).

A batch is priced by its *padded* cost, ``longest sequence × number of sequences``, and capped by
``max_padded_tokens`` (and optionally a request count). Inputs are sorted longest-first so sequences of similar
length share a batch and little compute is wasted on padding; callers restore input order from the indices.

The cap alone still lets one batch span a wide range of lengths: on 64 NQ requests' 1,280 documents the attention
probe's first pass at 131,072 tokens ran 362 rows from 362 down to 174 tokens, and 26% of the three passes' token
positions were padding. With ``padding_tolerance`` a batch that already costs ``min_batch_tokens`` is closed before
an input more than that fraction shorter than its longest: 0.1 and 8,192 give six passes and 6.5% padding there
(a minimum-cost split with a pass priced at 4,096 tokens: five and 6.2%), while a lone request's rows
(20 documents, under 8,192 tokens) still share one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MIN_BATCH_TOKENS", "PADDING_TOLERANCE", "plan_batches"]

# the length-banded planning of the passes whose cost is mostly the model's own (attention probe, encoder windows)
PADDING_TOLERANCE = 0.1
MIN_BATCH_TOKENS = 8192


def plan_batches(
    lengths: Sequence[int],
    *,
    max_padded_tokens: int,
    max_batch_size: int | None = None,
    padding_tolerance: float | None = None,
    min_batch_tokens: int = MIN_BATCH_TOKENS,
) -> list[list[int]]:
    """Group input indices into batches whose padded cost fits ``max_padded_tokens``.

    A single input longer than the cap gets a batch of its own. With ``padding_tolerance``, a batch whose padded
    cost has reached ``min_batch_tokens`` also ends before an input shorter than ``(1 - padding_tolerance)`` × its
    longest. Returns index lists, longest batch first.

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
        too_short = (
            padding_tolerance is not None
            and longest * len(current) >= min_batch_tokens
            and lengths[index] < (1 - padding_tolerance) * longest
        )
        if current and (too_costly or too_many or too_short):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
