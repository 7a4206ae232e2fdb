"""The attention vocabulary every decoder shares: the :class:`AttentionPlan` of a pass, the :class:`Decoder`
protocol the scorer talks to, the additive mask and the SDPA backends. Decoders import it; it imports no decoder.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ctxcompress.engines.kv_buffer import KVBuffer

__all__ = ["AttentionPlan", "Decoder", "additive_mask", "attention_backends"]

# cuDNN attention builds an execution plan for every new shape (tens of ms, measured on an H100: cold single
# requests took 581 ms with it, 150 ms without); scoring shapes change with every batch, so it is left out.
_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def attention_backends() -> AbstractContextManager[None]:
    """Context in which ``scaled_dot_product_attention`` picks among flash, memory-efficient and math kernels."""
    return sdpa_kernel(_BACKENDS)


@dataclass
class AttentionPlan:
    """Which cache slots each query of a pass may attend to.

    ``allowed`` is ``[B or 1, W, L]`` bool over the ``L`` = cached + new slots (a leading 1 broadcasts over the
    batch). ``causal_only`` says the pass has no cache and right-padded rows, so plain causal attention is exact
    for every real token (``allowed`` is then still given, for decoders that need a mask).
    ``kv_positions`` ``[B, L]`` are the rotary positions of the slots (sliding-window layers need them).
    """

    allowed: torch.Tensor
    causal_only: bool
    positions: torch.Tensor  # [B, W] rotary positions of the new tokens
    kv_positions: torch.Tensor  # [B, L]


class Decoder(Protocol):
    """What the scorer needs from a decoder: the forward pass and a few facts about it.

    ``name``: ``fused`` or ``transformers``. ``kernels``: ``triton`` when its element-wise work (and so the
    scorer's token NLL) runs as Triton kernels, else ``torch``. ``static_shapes``: its passes can be replayed at
    fixed shapes as CUDA graphs (``engines/cuda_graphs.py``), which also needs ``num_kv_heads`` and ``head_dim``.
    ``final_norm``: the RMSNorm weight its hidden states leave with, when the norm is a plain RMSNorm (it bounds
    the logits; ``engines/vocab_head.py``), else None.
    """

    name: str
    kernels: str
    static_shapes: bool
    num_kv_heads: int
    head_dim: int
    final_norm: torch.Tensor | None

    def __call__(self, tokens: torch.Tensor, plan: AttentionPlan, cache: KVBuffer) -> torch.Tensor:
        """Hidden states ``[B, W, H]`` of ``tokens`` ``[B, W]``; their keys/values are appended to ``cache``."""
        ...


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, Q, K]`` bool → ``[B, 1, Q, K]`` additive mask (0 where allowed, dtype-min elsewhere).

    The last dimension's storage is padded to a multiple of 16 elements, so attention kernels that need an
    aligned mask stride take it as is instead of copying it in every layer.
    """
    batch, queries, keys = allowed.shape
    padded = -(-keys // 16) * 16
    mask = torch.zeros((batch, 1, queries, padded), dtype=dtype, device=allowed.device)[..., :keys]
    mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
    return mask
