"""FusedLlamaDecoder: an inference-only forward pass for Llama-family decoders (Llama, SmolLM2, Qwen2), for scoring.

Same math as the transformers module (pre-norm RMSNorm, rotary attention with grouped KV heads, SiLU-gated MLP;
Touvron et al. 2023, arXiv:2302.13971), fewer and larger kernels per layer:

* one QKV matrix product and one gate+up product (weights concatenated once at load);
* rotary embedding applied to queries and keys together as ``x·cos + roll(x)·sin±`` (3 kernels);
* residual additions folded into the output projections (``addmm``: the add is the GEMM epilogue);
* ``F.rms_norm`` (a fused kernel where torch has one);
* attention: with no cache and right padding the pass is plainly causal, so flash attention runs without a mask;
  otherwise one additive mask per *pass* (not per layer) with the grouped query heads folded into the query
  axis, ``[B, kv_heads, group·W, d]``, so keys/values are never repeated per query head.

The HF modules' parameters are re-pointed at views of the concatenated weights, so nothing is stored twice.
``kernels="triton"`` (the default on CUDA where Triton is installed) runs rotary embedding and SiLU gating as one
Triton kernel each (``engines/triton_kernels.py``) instead of five torch kernels; ``compile=True`` instead wraps
the element-wise blocks around the matrix products in ``torch.compile`` (opt-in).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ctxcompress.engines import triton_kernels
from ctxcompress.engines.attention_plan import AttentionPlan, additive_mask, attention_backends
from ctxcompress.engines.kv_buffer import KVBuffer

__all__ = ["FusedLlamaDecoder"]

_SUPPORTED_TYPES = {"llama", "qwen2"}


@dataclass
class _Layer:
    attn_norm: torch.Tensor
    qkv_weight: torch.Tensor
    qkv_bias: torch.Tensor | None
    o_weight_t: torch.Tensor  # transposed view, for addmm
    mlp_norm: torch.Tensor
    gate_up_weight: torch.Tensor
    down_weight_t: torch.Tensor


class FusedLlamaDecoder:
    """Decoder over a transformers ``LlamaForCausalLM``/``Qwen2ForCausalLM`` (see :meth:`unsupported_reason`)."""

    name = "fused"
    static_shapes = True

    def __init__(self, model: torch.nn.Module, *, compile: bool = False, kernels: str = "auto") -> None:
        reason = self.unsupported_reason(model.config)
        if reason is not None:
            raise ValueError(f"FusedLlamaDecoder does not support this model: {reason}")
        config = model.config
        base = getattr(model, model.base_model_prefix)
        self.num_heads = int(config.num_attention_heads)
        self.num_kv_heads = int(getattr(config, "num_key_value_heads", None) or self.num_heads)
        self.group = self.num_heads // self.num_kv_heads
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // self.num_heads)
        self.hidden_size = int(config.hidden_size)
        self.eps = float(config.rms_norm_eps)
        self.embed = base.embed_tokens.weight
        self.final_norm = base.norm.weight
        self.dtype = self.embed.dtype
        theta = _rope_theta(config)
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.int64).to(torch.float32) / self.head_dim
        self.inv_freq = (1.0 / theta**exponents).to(self.embed.device)
        self.layers = [_fuse_layer(layer) for layer in base.layers]
        self.kernels = self._resolve_kernels(kernels, compile)
        self._pre_attention: Callable[..., torch.Tensor] = _pre_attention
        self._post_attention: Callable[..., torch.Tensor] = _post_attention
        if self.kernels == "triton":
            self._pre_attention = functools.partial(_pre_attention, rotate=_rotate_triton)
            self._post_attention = functools.partial(_post_attention, gate=triton_kernels.silu_gate)
        if compile:
            self._pre_attention = torch.compile(_pre_attention, dynamic=True, fullgraph=True)
            self._post_attention = torch.compile(_post_attention, dynamic=True, fullgraph=True)

    def _resolve_kernels(self, kernels: str, compile: bool) -> str:
        """``auto`` → ``triton`` on CUDA with Triton and no ``torch.compile``, else ``torch``."""
        if kernels not in ("auto", "triton", "torch"):
            raise ValueError(f"unknown kernels {kernels!r}: use auto, triton or torch")
        usable = self.embed.is_cuda and triton_kernels.available() and triton_kernels.supports_head_dim(self.head_dim)
        if kernels == "triton" and (compile or not usable):
            why = "with torch.compile" if compile else "without CUDA, Triton and a power-of-two half head size"
            raise ValueError(f"kernels='triton' cannot run {why}")
        return "triton" if kernels == "triton" or (kernels == "auto" and usable and not compile) else "torch"

    @staticmethod
    def unsupported_reason(config: object) -> str | None:
        """None when the fused path computes exactly what the transformers module does, else why not."""
        model_type = getattr(config, "model_type", None)
        if model_type not in _SUPPORTED_TYPES:
            return f"model type {model_type!r} (supported: {sorted(_SUPPORTED_TYPES)})"
        if getattr(config, "hidden_act", "silu") != "silu":
            return f"activation {config.hidden_act!r}"
        if getattr(config, "mlp_bias", False):
            return "MLP biases"
        if model_type == "llama" and getattr(config, "attention_bias", False):
            return "attention biases"
        layer_types = getattr(config, "layer_types", None) or []
        if any(t != "full_attention" for t in layer_types) or getattr(config, "use_sliding_window", False):
            return "sliding-window attention"
        rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            return f"rope type {rope.get('rope_type', rope.get('type'))!r}"
        if float(rope.get("partial_rotary_factor", 1.0)) != 1.0:
            return "partial rotary embedding"
        return None

    @torch.inference_mode()
    def __call__(
        self,
        tokens: torch.Tensor,
        plan: AttentionPlan,
        cache: KVBuffer | None,
        observer: Callable[[int, torch.Tensor, torch.Tensor], object] | None = None,
    ) -> torch.Tensor:
        """Hidden states ``[B, W, H]``. ``cache`` None: a plainly causal pass (``plan.causal_only``) whose keys and
        values are not kept. ``observer(layer, queries [B, heads, W, d], keys [B, kv_heads, L, d])`` sees every
        layer's rotated queries and the keys they attend to (the attention probe, ``engines/attention.py``)."""
        if cache is None and not plan.causal_only:
            raise ValueError("a pass without a KV cache must be plainly causal")
        hidden = F.embedding(tokens, self.embed)
        # What rotates queries and keys: cos/sin tables (torch), or the positions (the Triton kernel's angles).
        rotary = self._rotary(plan.positions) if self.kernels == "torch" else (plan.positions, self.inv_freq)
        # One mask per pass: query rows repeated per head of a KV group (see _attend).
        mask = None if plan.causal_only else additive_mask(plan.allowed.repeat(1, self.group, 1), self.dtype)
        n_qk = (self.num_heads + self.num_kv_heads) * self.head_dim
        with attention_backends():  # never cuDNN: it plans per shape
            for index, layer in enumerate(self.layers):
                qkv, qk = self._pre_attention(
                    hidden,
                    layer.attn_norm,
                    layer.qkv_weight,
                    layer.qkv_bias,
                    rotary,
                    self.eps,
                    self.num_heads + self.num_kv_heads,
                )
                keys = qk[:, :, self.num_heads :].transpose(1, 2)
                values = qkv[..., n_qk:].unflatten(-1, (self.num_kv_heads, self.head_dim)).transpose(1, 2)
                if cache is not None:
                    keys, values = cache.update(keys, values, index)
                if observer is not None:
                    observer(index, qk[:, :, : self.num_heads].transpose(1, 2), keys)
                attended = self._attend(qk[:, :, : self.num_heads], keys, values, mask)
                hidden = self._post_attention(
                    hidden,
                    attended,
                    layer.o_weight_t,
                    layer.mlp_norm,
                    layer.gate_up_weight,
                    layer.down_weight_t,
                    self.eps,
                )
        return F.rms_norm(hidden, (self.hidden_size,), self.final_norm, self.eps)

    def _rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin ``[B, W, 1, head_dim]`` such that rope(x) = x·cos + roll(x, d/2)·sin."""
        freqs = positions[..., None].to(torch.float32) * self.inv_freq
        cos = torch.cat((freqs, freqs), dim=-1).cos()
        sin = freqs.sin()
        signed_sin = torch.cat((-sin, sin), dim=-1)
        return cos.to(self.dtype)[:, :, None], signed_sin.to(self.dtype)[:, :, None]

    def _attend(
        self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """``queries`` ``[B, W, heads, d]``, keys/values ``[B, kv_heads, L, d]`` → ``[B, W, heads·d]``."""
        batch, width = queries.shape[:2]
        if mask is None:
            out = F.scaled_dot_product_attention(
                queries.transpose(1, 2), keys, values, is_causal=True, enable_gqa=self.group > 1
            )
            return out.transpose(1, 2).reshape(batch, width, -1)
        # Fold each KV group's query heads into the query axis: [B, kv_heads, group·W, d].
        folded = queries.unflatten(2, (self.num_kv_heads, self.group)).permute(0, 2, 3, 1, 4)
        folded = folded.reshape(batch, self.num_kv_heads, self.group * width, self.head_dim)
        out = F.scaled_dot_product_attention(folded, keys, values, attn_mask=mask)
        out = out.unflatten(2, (self.group, width)).permute(0, 3, 1, 2, 4)
        return out.reshape(batch, width, -1)


def _rotate(qkv: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], qk_heads: int) -> torch.Tensor:
    """Rotary embedding in torch; ``rotary`` = (cos, signed sin) from :meth:`FusedLlamaDecoder._rotary`."""
    cos, sin = rotary
    head_dim = cos.shape[-1]
    qk = qkv[..., : qk_heads * head_dim].unflatten(-1, (qk_heads, head_dim))
    return torch.addcmul(qk * cos, torch.roll(qk, head_dim // 2, dims=-1), sin)


def _rotate_triton(qkv: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], qk_heads: int) -> torch.Tensor:
    """Rotary embedding as one Triton kernel; ``rotary`` = (positions, inverse frequencies)."""
    positions, inv_freq = rotary
    return triton_kernels.rotary_qk(qkv, positions, inv_freq, qk_heads, 2 * inv_freq.shape[0])


def _pre_attention(
    hidden: torch.Tensor,
    norm: torch.Tensor,
    qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor | None,
    rotary: tuple[torch.Tensor, torch.Tensor],
    eps: float,
    qk_heads: int,
    rotate: Callable[[torch.Tensor, tuple[torch.Tensor, torch.Tensor], int], torch.Tensor] = _rotate,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm → QKV product → rotary on query and key heads together: (qkv, rotated ``[B, W, qk_heads, d]``)."""
    normed = F.rms_norm(hidden, (hidden.shape[-1],), norm, eps)
    qkv = F.linear(normed, qkv_weight, qkv_bias)
    return qkv, rotate(qkv, rotary, qk_heads)


def _silu_gate(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def _post_attention(
    hidden: torch.Tensor,
    attended: torch.Tensor,
    o_weight_t: torch.Tensor,
    norm: torch.Tensor,
    gate_up_weight: torch.Tensor,
    down_weight_t: torch.Tensor,
    eps: float,
    gate: Callable[[torch.Tensor], torch.Tensor] = _silu_gate,
) -> torch.Tensor:
    """Output projection + residual, then RMSNorm → gate/up → SiLU gating → down projection + residual."""
    shape = hidden.shape
    flat = torch.addmm(hidden.reshape(-1, shape[-1]), attended.reshape(-1, attended.shape[-1]), o_weight_t)
    normed = F.rms_norm(flat, (shape[-1],), norm, eps)
    flat = torch.addmm(flat, gate(F.linear(normed, gate_up_weight)), down_weight_t)
    return flat.view(shape)


def _fuse_layer(layer: torch.nn.Module) -> _Layer:
    attn, mlp = layer.self_attn, layer.mlp
    qkv_weight = _concat_params([attn.q_proj, attn.k_proj, attn.v_proj], "weight")
    qkv_bias = _concat_params([attn.q_proj, attn.k_proj, attn.v_proj], "bias") if attn.q_proj.bias is not None else None
    gate_up_weight = _concat_params([mlp.gate_proj, mlp.up_proj], "weight")
    return _Layer(
        attn_norm=layer.input_layernorm.weight,
        qkv_weight=qkv_weight,
        qkv_bias=qkv_bias,
        o_weight_t=attn.o_proj.weight.t(),
        mlp_norm=layer.post_attention_layernorm.weight,
        gate_up_weight=gate_up_weight,
        down_weight_t=mlp.down_proj.weight.t(),
    )


def _concat_params(modules: list[torch.nn.Module], name: str) -> torch.Tensor:
    """Concatenate the modules' parameters along dim 0; re-point each module at its view (no second copy)."""
    fused = torch.cat([getattr(m, name).detach() for m in modules], dim=0)
    start = 0
    for module in modules:
        size = getattr(module, name).shape[0]
        setattr(module, name, torch.nn.Parameter(fused[start : start + size], requires_grad=False))
        start += size
    return fused


def _rope_theta(config: object) -> float:
    rope = dict(getattr(config, "rope_parameters", None) or {})
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
