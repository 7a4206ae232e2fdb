"""What iterative scoring keeps: the per-prompt :class:`KeepRule`, the prompts and scores of
``CausalLMScorer.iterative_nll``, and :func:`window_keep`, the rule applied to one window on the device.

LLMLingua's iterative compression (Jiang et al. 2023, arXiv:2310.05736, §3.3) conditions each window on the
tokens kept before it; which tokens are kept is fixed here per group (document) and window, so the counts are
known on the host before any score is read back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["IterativePrompt", "IterativeScores", "KeepRule", "stack_padded", "window_keep"]


@dataclass
class KeepRule:
    """Which tokens of each window join the KV cache that conditions the later windows.

    Per token of the stream: its ``group`` (e.g. its document), whether it is ``pinned`` (always kept), and
    ``take``: how many *free* (unpinned) tokens of its group the window it falls in keeps, highest score first
    (ties: the earlier token). ``take`` must be the same for all tokens of one group inside one window.
    """

    group: np.ndarray  # int64 [n]
    pinned: np.ndarray  # bool [n]
    take: np.ndarray  # int64 [n]

    @classmethod
    def keep_all(cls, n_tokens: int) -> KeepRule:
        return cls(np.zeros(n_tokens, np.int64), np.ones(n_tokens, bool), np.zeros(n_tokens, np.int64))

    def kept_per_window(self, window: int) -> np.ndarray:
        """Number of tokens each window keeps (known before scoring: the rule fixes the counts)."""
        n = len(self.group)
        windows = np.arange(n) // window
        kept = np.bincount(windows[self.pinned], minlength=-(-n // window)).astype(np.int64)
        free = ~self.pinned
        if free.any():
            span = int(self.group.max()) - int(self.group.min()) + 1
            key = windows[free] * span + (self.group[free] - int(self.group.min()))
            unique, first, counts = np.unique(key, return_index=True, return_counts=True)
            np.add.at(kept, unique // span, np.minimum(self.take[free][first], counts))
        return kept


@dataclass
class IterativePrompt:
    """A token stream to score iteratively, once per conditioning prefix (one scoring *stream* per prefix).

    A token's ranking score is ``sum(weights[s] * nll[s])`` over the streams (default: the first stream's NLL;
    ``(1, -1)`` gives LongLLMLingua's contrastive score). ``rule`` picks the kept tokens (default: all).
    """

    tokens: list[int]
    prefixes: list[list[int]] = field(default_factory=list)
    weights: tuple[float, ...] = (1.0,)
    rule: KeepRule | None = None


@dataclass
class IterativeScores:
    """Per prompt: ``nll`` ``[n_streams, n]`` and the ranking ``score`` ``[n]`` (+inf where no NLL exists)."""

    nll: np.ndarray
    score: np.ndarray


def stack_padded(arrays: list[np.ndarray], width: int, fill: object) -> np.ndarray:
    """Rows of ``arrays`` in one ``[len(arrays), width]`` array, right-filled with ``fill``."""
    out = np.full((len(arrays), width), fill, dtype=arrays[0].dtype)
    for row, values in enumerate(arrays):
        out[row, : len(values)] = values
    return out


# Pairwise comparisons per block of rows in window_keep (bounds the [rows, W, W] temporaries).
_RANK_BLOCK_ELEMENTS = 1 << 24


def window_keep(
    score: torch.Tensor, group: torch.Tensor, pinned: torch.Tensor, take: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Keep mask ``[P, W]``: pinned tokens, plus in each group the ``take`` best free tokens (ties: earlier).

    A free token's rank in its group is the number of free tokens of the same group that beat it (higher
    score, or equal score and earlier), counted by pairwise comparison: no sort, no host round trip.
    """
    rows, width = score.shape
    free = valid & ~pinned
    earlier = torch.ones((width, width), dtype=torch.bool, device=score.device).tril(-1)  # [t, u]: u < t
    rank = torch.empty((rows, width), dtype=torch.long, device=score.device)
    block = max(1, _RANK_BLOCK_ELEMENTS // max(width * width, 1))
    for lo in range(0, rows, block):
        s, g, f = score[lo : lo + block], group[lo : lo + block], free[lo : lo + block]
        mine, theirs = s[:, :, None], s[:, None, :]
        beats = (theirs > mine) | ((theirs == mine) & earlier)
        beats &= f[:, None, :] & (g[:, None, :] == g[:, :, None])
        rank[lo : lo + block] = beats.sum(dim=2)
    return (pinned & valid) | (free & (rank < take))
