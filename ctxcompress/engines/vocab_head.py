"""VocabHead: the causal LM's vocabulary projection, reduced to each target token's NLL.

``-log softmax(W h)[target]`` in fp32, over chunks of rows, so full-vocabulary fp32 logits for a whole batch
never exist (8192 rows x 49152 words x 4 B = 1.6 GB per chunk on CUDA). On CUDA with a bf16 model the projection
runs in fp16 when no logit can overflow it (fp16 keeps 3 more mantissa bits than bf16), and the log-softmax +
gather is one Triton kernel where the decoder runs Triton kernels too (``engines/triton_kernels.py``).
"""

from __future__ import annotations

import torch

from ctxcompress.engines import triton_kernels

__all__ = ["FP16_SAFE_MAGNITUDE", "VocabHead", "fp16_logit_bound"]

# Largest magnitude the fp16 vocabulary head may reach (fp16 max is 65504; the margin covers rounding).
FP16_SAFE_MAGNITUDE = 30000.0


class VocabHead:
    """Token NLL from hidden states.

    Args:
        head: the model's output embeddings (``model.get_output_embeddings()``).
        chunk_rows: hidden states projected per chunk.
        final_norm: the RMSNorm weight the hidden states leave the decoder with, when known; it bounds the logits
            (:func:`fp16_logit_bound`) and so allows the fp16 projection.
        softcap: the model's final logit soft-capping (Gemma), if any.
        fused_nll: log-softmax + gather as one Triton kernel.
    """

    def __init__(
        self,
        head: torch.nn.Module,
        *,
        chunk_rows: int,
        final_norm: torch.Tensor | None = None,
        softcap: float | None = None,
        fused_nll: bool = False,
    ) -> None:
        self.head = head
        self.chunk_rows = chunk_rows
        self.softcap = softcap
        self.fused_nll = fused_nll
        self.fp16_weight = self._fp16_weight(final_norm)

    def _fp16_weight(self, final_norm: torch.Tensor | None) -> torch.Tensor | None:
        """An fp16 copy of the projection, for bf16 models on CUDA when no logit can overflow fp16.

        Overflow is ruled out by a bound, not hoped away: hidden states leave RMSNorm with weight ``g``, so
        ``||h|| <= sqrt(H) * max|g|`` and ``|logit| <= ||h|| * max_v ||w_v||`` (Cauchy-Schwarz).
        """
        head = self.head
        if final_norm is None or not isinstance(head, torch.nn.Linear) or head.bias is not None:
            return None
        if not (head.weight.is_cuda and head.weight.dtype == torch.bfloat16):
            return None
        if fp16_logit_bound(final_norm, head.weight) > FP16_SAFE_MAGNITUDE:
            return None
        return head.weight.detach().half()

    def nll(self, predictors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``[N]`` fp32 NLL of ``targets`` ``[N]`` given the hidden states ``predictors`` ``[N, H]``."""
        out = torch.empty(targets.shape[0], dtype=torch.float32, device=targets.device)
        for start in range(0, targets.shape[0], self.chunk_rows):
            stop = start + self.chunk_rows
            if self.fp16_weight is not None:
                logits = torch.nn.functional.linear(predictors[start:stop].half(), self.fp16_weight)
            else:
                logits = self.head(predictors[start:stop])
            if self.softcap:
                logits = torch.tanh(logits / self.softcap) * self.softcap
            if self.fused_nll:
                out[start:stop] = triton_kernels.token_nll(logits, targets[start:stop])
            else:
                out[start:stop] = -_log_softmax_fp32(logits).gather(1, targets[start:stop, None])[:, 0]
        return out


def fp16_logit_bound(norm_weight: torch.Tensor, head_weight: torch.Tensor) -> float:
    """Upper bound on any hidden entry or logit after ``rms_norm(x, norm_weight)`` and ``head_weight`` ``[V, H]``."""
    hidden_bound = norm_weight.shape[0] ** 0.5 * float(norm_weight.detach().float().abs().max())
    return hidden_bound * max(1.0, float(torch.linalg.vector_norm(head_weight.detach().float(), dim=1).max()))


def _log_softmax_fp32(logits: torch.Tensor) -> torch.Tensor:
    """fp32 log-softmax over the vocabulary. On CUDA, fp16 logits are read once by a kernel that converts as it
    goes (``_log_softmax(..., half_to_float=True)``; torch has it for fp16 only): far less memory traffic than
    ``.float()`` followed by ``logsumexp`` (max, subtract, exp, sum: each a pass over the fp32 copy)."""
    if logits.is_cuda and logits.dtype == torch.float16:
        return torch._log_softmax(logits, -1, True)
    return torch.log_softmax(logits.float(), dim=-1)
