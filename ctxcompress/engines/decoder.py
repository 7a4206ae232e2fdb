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

import torch

from ctxcompress.engines.attention_plan import AttentionPlan, Decoder, additive_mask, attention_backends
from ctxcompress.engines.fused_llama import FusedLlamaDecoder
from ctxcompress.engines.kv_buffer import KVBuffer

__all__ = ["TransformersDecoder", "build_decoder"]


class TransformersDecoder:
    """The model's own transformers decoder, called with a 4-D additive mask and the :class:`KVBuffer`."""

    name = "transformers"
    kernels = "torch"
    static_shapes = False  # transformers' own cache and mask handling are not captured as graphs
    final_norm = None  # the module's final norm may not be a plain RMSNorm (Gemma's is 1 + weight)

    def __init__(self, model: torch.nn.Module, *, compile: bool = False) -> None:
        self.config = model.config
        heads = int(self.config.num_attention_heads)
        self.num_kv_heads = int(getattr(self.config, "num_key_value_heads", None) or heads)
        self.head_dim = int(getattr(self.config, "head_dim", None) or self.config.hidden_size // heads)
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
