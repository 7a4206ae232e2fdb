"""Triton kernels for the scorer's memory-bound work on CUDA: rotary embedding, SiLU gating, token NLL.

Both are memory-bound; the eager torch versions take several kernels each (rotary: multiply, roll, multiply-add,
plus cos/sin tables; gating: SiLU, then a product), every one a full read and write of a ``[tokens, width]``
tensor. One kernel each reads its input once and writes its output once:

* :func:`rotary_qk`: rotary position embedding (Su et al. 2021, arXiv:2104.09864, "rotate half" layout) of the
  query and key heads of a fused QKV product, with the angles computed in the kernel from the positions;
  ``out = x·cos θ + rotate_half(x)·sin θ`` in fp32, stored in the model's dtype.
* :func:`silu_gate`: ``silu(gate) · up`` over a fused gate+up product (SwiGLU, Shazeer 2020, arXiv:2002.05202).
* :func:`token_nll`: ``logsumexp(logits) - logits[target]`` per row, streaming over the vocabulary with a running
  maximum and rescaled sum (the online softmax of Milakov & Gimelshein 2018, arXiv:1805.02867): the fp16 logits
  are read once, and no ``[rows, vocab]`` fp32 log-probabilities are written and gathered from.

The torch expressions in ``engines/fused_llama.py`` and ``engines/scorer.py`` are the reference (and the path
on CPU, where Triton does not run); tests compare the two on CUDA.
"""

from __future__ import annotations

import torch

try:  # Triton ships with CUDA builds of torch; CPU builds have none.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the torch build
    triton = None

__all__ = ["available", "rotary_qk", "silu_gate", "supports_head_dim", "token_nll"]


def available() -> bool:
    """True where the kernels can run: Triton importable and a CUDA device present."""
    return triton is not None and torch.cuda.is_available()


def supports_head_dim(head_dim: int) -> bool:
    """The rotary kernel handles even head sizes whose half is a power of two (32, 64, ...)."""
    half = head_dim // 2
    return head_dim % 2 == 0 and half >= 1 and half & (half - 1) == 0


def rotary_qk(
    qkv: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, qk_heads: int, head_dim: int
) -> torch.Tensor:
    """Rotate the first ``qk_heads`` heads of ``qkv`` ``[..., width]`` → ``[..., qk_heads, head_dim]``.

    ``positions`` has ``qkv``'s leading shape; ``inv_freq`` ``[head_dim / 2]`` fp32 (θ = position · inv_freq).
    """
    if not qkv.is_cuda or triton is None:
        raise RuntimeError("rotary_qk runs on CUDA with Triton")
    lead = qkv.shape[:-1]
    rows = qkv.reshape(-1, qkv.shape[-1])
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    flat_positions = positions.reshape(-1).contiguous()
    tokens = rows.shape[0]
    out = torch.empty((*lead, qk_heads, head_dim), dtype=qkv.dtype, device=qkv.device)
    if tokens == 0:
        return out
    block_tokens = 16
    with torch.cuda.device(qkv.device):  # Triton launches on the current device
        _rotary_kernel[(triton.cdiv(tokens, block_tokens),)](
            rows,
            flat_positions,
            inv_freq,
            out,
            tokens,
            rows.stride(0),
            HEADS=qk_heads,
            BLOCK_HEADS=triton.next_power_of_2(qk_heads),
            HALF=head_dim // 2,
            BLOCK_TOKENS=block_tokens,
        )
    return out


def silu_gate(gate_up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) · up`` for ``gate_up`` ``[..., 2·inner]`` (gate first, then up) → ``[..., inner]``."""
    if not gate_up.is_cuda or triton is None:
        raise RuntimeError("silu_gate runs on CUDA with Triton")
    inner = gate_up.shape[-1] // 2
    rows = gate_up.reshape(-1, gate_up.shape[-1])
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    out = torch.empty((*gate_up.shape[:-1], inner), dtype=gate_up.dtype, device=gate_up.device)
    if rows.shape[0] == 0:
        return out
    block_rows, block = 8, 512
    grid = (triton.cdiv(rows.shape[0], block_rows), triton.cdiv(inner, block))
    with torch.cuda.device(gate_up.device):
        _silu_gate_kernel[grid](rows, out, rows.shape[0], inner, rows.stride(0), BLOCK_ROWS=block_rows, BLOCK=block)
    return out


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``-log softmax(logits)[target]`` per row in fp32; ``logits`` ``[rows, vocab]``, ``targets`` ``[rows]``."""
    if not logits.is_cuda or triton is None:
        raise RuntimeError("token_nll runs on CUDA with Triton")
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    rows, vocab = logits.shape
    out = torch.empty(rows, dtype=torch.float32, device=logits.device)
    if rows:
        with torch.cuda.device(logits.device):
            _token_nll_kernel[(rows,)](logits, targets.contiguous(), out, vocab, logits.stride(0), BLOCK=4096)
    return out


if triton is not None:

    @triton.jit
    def _rotary_kernel(
        qkv_ptr,
        positions_ptr,
        inv_freq_ptr,
        out_ptr,
        tokens,
        row_stride,
        HEADS: tl.constexpr,
        BLOCK_HEADS: tl.constexpr,
        HALF: tl.constexpr,
        BLOCK_TOKENS: tl.constexpr,
    ):
        token = tl.program_id(0) * BLOCK_TOKENS + tl.arange(0, BLOCK_TOKENS)
        head = tl.arange(0, BLOCK_HEADS)
        lane = tl.arange(0, HALF)
        token_ok = token < tokens
        angle = (
            tl.load(positions_ptr + token, mask=token_ok, other=0).to(tl.float32)[:, None]
            * tl.load(inv_freq_ptr + lane)[None, :]
        )
        cos = tl.cos(angle)[:, None, :]
        sin = tl.sin(angle)[:, None, :]
        ok = token_ok[:, None, None] & (head < HEADS)[None, :, None]
        within = head[None, :, None] * (2 * HALF) + lane[None, None, :]
        source = qkv_ptr + token.to(tl.int64)[:, None, None] * row_stride + within
        first = tl.load(source, mask=ok, other=0.0).to(tl.float32)
        second = tl.load(source + HALF, mask=ok, other=0.0).to(tl.float32)
        target = out_ptr + token.to(tl.int64)[:, None, None] * (HEADS * 2 * HALF) + within
        tl.store(target, (first * cos - second * sin).to(out_ptr.dtype.element_ty), mask=ok)
        tl.store(target + HALF, (second * cos + first * sin).to(out_ptr.dtype.element_ty), mask=ok)

    @triton.jit
    def _silu_gate_kernel(gate_up_ptr, out_ptr, rows, inner, row_stride, BLOCK_ROWS: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
        column = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        ok = (row < rows)[:, None] & (column < inner)[None, :]
        row = row.to(tl.int64)[:, None]
        gate = tl.load(gate_up_ptr + row * row_stride + column[None, :], mask=ok, other=0.0).to(tl.float32)
        up = tl.load(gate_up_ptr + row * row_stride + inner + column[None, :], mask=ok, other=0.0).to(tl.float32)
        gated = gate / (1.0 + tl.exp(-gate)) * up
        tl.store(out_ptr + row * inner + column[None, :], gated.to(out_ptr.dtype.element_ty), mask=ok)

    @triton.jit
    def _token_nll_kernel(logits_ptr, targets_ptr, out_ptr, vocab, row_stride, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        start = logits_ptr + row * row_stride
        running_max = tl.full((BLOCK,), float("-inf"), tl.float32)
        running_sum = tl.zeros((BLOCK,), tl.float32)
        for offset in range(0, vocab, BLOCK):
            column = offset + tl.arange(0, BLOCK)
            values = tl.load(start + column, mask=column < vocab, other=float("-inf")).to(tl.float32)
            new_max = tl.maximum(running_max, values)
            safe_max = tl.where(new_max == float("-inf"), 0.0, new_max)  # lanes that have seen nothing yet
            running_sum = running_sum * tl.exp(running_max - safe_max) + tl.exp(values - safe_max)
            running_max = new_max
        row_max = tl.max(running_max, axis=0)
        total = tl.sum(running_sum * tl.exp(running_max - row_max), axis=0)
        target = tl.load(start + tl.load(targets_ptr + row)).to(tl.float32)
        tl.store(out_ptr + row, row_max + tl.log(total) - target)
