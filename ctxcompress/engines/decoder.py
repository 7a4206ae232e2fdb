"""Decoders: run a causal LM's layers over a batch of windows appended to a :class:`KVBuffer`; hidden states out.

The scorer describes attention once per forward pass as an :class:`AttentionPlan` and leaves the rest to a
decoder:

* :class:`FusedLlamaDecoder` (``engines/fused_llama.py``) for Llama-family checkpoints: fused projections,
  one additive mask per pass, flash attention when the pass is plainly causal. The default where it applies.
* :class:`TransformersDecoder`: the checkpoint's own transformers module (any architecture, incl. Gemma 3's
  sliding-window layers). The fallback, and the reference the fused decoder is tested against.
"""

from __future__ import annotations

import inspect
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ctxcompress.engines.kv_buffer import KVBuffer

__all__ = ["AttentionPlan", "Decoder", "TransformersDecoder", "attention_backends", "build_decoder", "additive_mask"]

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


class TransformersDecoder:
    """The model's own transformers decoder, called with a 4-D additive mask and the :class:`KVBuffer`."""

    name = "transformers"

    def __init__(self, model: torch.nn.Module, *, compile: bool = False) -> None:
        self.config = model.config
        self._base = getattr(model, model.base_model_prefix)
        if compile:  # shapes vary from pass to pass, hence dynamic=True
            self._base = torch.compile(self._base, dynamic=True)
        self.dtype = next(model.parameters()).dtype
        layer_types = getattr(self.config, "layer_types", None) or []
        window = int(getattr(self.config, "sliding_window", 0) or 0)
        self._sliding_window = window if "sliding_attention" in layer_types and window else None
        # transformers 5.24 renamed the cache argument (`past_key_values` is deprecated, removed in 5.40).
        accepted = inspect.signature(getattr(model, model.base_model_prefix).forward).parameters
        self._cache_argument = "cache" if "cache" in accepted else "past_key_values"

    def __call__(self, tokens: torch.Tensor, plan: AttentionPlan, cache: KVBuffer) -> torch.Tensor:
        allowed = plan.allowed.expand(tokens.shape[0], -1, -1)
        mask: torch.Tensor | dict[str, torch.Tensor] = additive_mask(allowed, self.dtype)
        if self._sliding_window is not None:
            near = (plan.positions[:, :, None] - plan.kv_positions[:, None, :]) < self._sliding_window
            mask = {"full_attention": mask, "sliding_attention": additive_mask(allowed & near, self.dtype)}
        with attention_backends():
            out = self._base(
                input_ids=tokens,
                attention_mask=mask,
                position_ids=plan.positions,
                use_cache=True,
                **{self._cache_argument: cache},
            )
        return out.last_hidden_state


def build_decoder(
    model: torch.nn.Module, kind: str = "auto", *, compile: bool = False, kernels: str = "auto"
) -> Decoder:
    """``auto``: the fused decoder where the architecture allows it, else transformers; or force either.

    ``compile`` runs the decoder's element-wise work through ``torch.compile`` (opt-in, CUDA-oriented);
    ``kernels`` picks the fused decoder's element-wise kernels (``auto``/``triton``/``torch``, see FusedLlamaDecoder).
    """
    from ctxcompress.engines.fused_llama import FusedLlamaDecoder

    if kind not in ("auto", "fused", "transformers"):
        raise ValueError(f"unknown decoder {kind!r}: use auto, fused or transformers")
    if kind == "transformers":
        return TransformersDecoder(model, compile=compile)
    reason = FusedLlamaDecoder.unsupported_reason(model.config)
    if reason is None:
        return FusedLlamaDecoder(model, compile=compile, kernels=kernels)
    if kind == "fused":
        raise ValueError(f"the fused decoder does not support this model: {reason}")
    return TransformersDecoder(model, compile=compile)
