"""QuestionAttention: how much attention the question pays to every context token, from one prefill of a small LM.

The KV-cache literature keeps the tokens that attention says matter: heavy hitters (H2O, Zhang et al. 2023),
an observation window of the last queries (SnapKV, Li et al. 2024), LazyLLM, Expected Attention. Applied to the
*input* of a RAG prompt this is a relevance signal (Sentinel, arXiv:2505.23277; QUITO, arXiv:2408.00274): put the
question after the context, run one prefill, and read the softmax attention from the question's tokens (the
observation window) to each context token.

How, without materialising attention for the whole sequence: the model runs with a registered transformers
attention function (``AttentionInterface``, public API, any architecture). It computes the layer's attention
output with SDPA as usual and, while a probe is active on the calling thread, also the softmax of the
*observation rows only* against that layer's keys — ``[rows, heads, window, length]``, never
``[length, length]`` — and adds the per-key mass (mean over the window's queries and the heads) to the
layer's accumulator. Outside a probe the function is plain SDPA, so the scorer's own passes are unchanged.

Rows are batched right-padded by a padded-token budget (``ctxcompress.batching``), longest first.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ctxcompress.batching import plan_batches
from ctxcompress.engines.decoder import attention_backends

__all__ = ["ObservedSequence", "QuestionAttention", "naive_window_attention"]

_PROBE_NAME = "ctxcompress_probe"
_active = threading.local()
_register_lock = threading.Lock()
_registered = False


@dataclass(frozen=True)
class ObservedSequence:
    """Token ids of one prompt; queries at positions ``[window_start, len(ids))`` observe the keys before them."""

    ids: list[int]
    window_start: int


@dataclass
class _Probe:
    window: torch.Tensor  # [B, W] positions of each row's observation queries (padded with the last one)
    window_valid: torch.Tensor  # [B, W] bool
    key_valid: torch.Tensor  # [B, L] bool: real tokens
    mass: list[torch.Tensor]  # per layer [B, L] float32


def _probe_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """SDPA attention; with an active probe, also accumulate the observation rows' attention per key."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    probe: _Probe | None = getattr(_active, "probe", None)
    if probe is not None:
        _accumulate(probe, query, key, scaling, getattr(module, "sliding_window", None))
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def _accumulate(
    probe: _Probe, query: torch.Tensor, key: torch.Tensor, scaling: float | None, sliding_window: int | None
) -> None:
    """``query`` ``[B, heads, L, d]``, ``key`` ``[B, kv_heads, L, d]`` (post-rotary, post-norm); a sliding-window
    layer (Gemma 3) lets a query see only its last ``sliding_window`` keys."""
    batch, heads, length, dim = query.shape
    index = probe.window[:, None, :, None].expand(batch, heads, probe.window.shape[1], dim)
    rows = query.gather(2, index).float()  # [B, heads, W, d]
    keys = key.float().repeat_interleave(heads // key.shape[1], dim=1)  # GQA: each query head sees its group
    scale = scaling if scaling is not None else dim**-0.5
    scores = rows @ keys.transpose(-1, -2) * scale  # [B, heads, W, L]
    positions = torch.arange(length, device=query.device)
    visible = (positions[None, None, :] <= probe.window[:, :, None]) & probe.key_valid[:, None, :]  # [B, W, L]
    if sliding_window:
        visible &= positions[None, None, :] > probe.window[:, :, None] - sliding_window
    scores = scores.masked_fill(~visible[:, None], float("-inf"))
    weights = torch.softmax(scores, dim=-1) * probe.window_valid[:, None, :, None]
    counted = probe.window_valid.sum(dim=1).clamp(min=1)[:, None]
    probe.mass.append(weights.sum(dim=(1, 2)) / (heads * counted))


class QuestionAttention:
    """Observation-window attention over the context, per layer, from a causal LM's prefill.

    Args:
        model: a transformers causal LM (any architecture whose attention goes through ``AttentionInterface``).
        pad_id: token used to right-pad rows.
        max_batch_tokens: padded tokens per forward pass.
    """

    def __init__(self, model: torch.nn.Module, *, pad_id: int, max_batch_tokens: int = 8192) -> None:
        self.model = model
        self.pad_id = pad_id
        self.max_batch_tokens = max_batch_tokens
        self.device = next(model.parameters()).device
        self.num_layers = int(model.config.num_hidden_layers)
        _install_probe(model)

    @torch.inference_mode()
    def window_attention(self, sequences: Sequence[ObservedSequence]) -> list[np.ndarray]:
        """Per sequence, ``[layers, len(ids)]``: the attention mass each token receives from the window's
        queries, averaged over the window and the heads (rows of one layer sum to 1 over the visible keys)."""
        out: list[np.ndarray] = [np.zeros((self.num_layers, 0), dtype=np.float32)] * len(sequences)
        lengths = [len(s.ids) for s in sequences]
        for batch in plan_batches(lengths, max_batch_tokens=self.max_batch_tokens):
            rows = [sequences[i] for i in batch]
            for i, mass in zip(batch, self._run(rows), strict=True):
                out[i] = mass
        return out

    def _run(self, rows: list[ObservedSequence]) -> list[np.ndarray]:
        length = max(len(r.ids) for r in rows)
        width = max(len(r.ids) - r.window_start for r in rows)
        tokens = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        key_valid = torch.zeros((len(rows), length), dtype=torch.bool)
        window = torch.zeros((len(rows), width), dtype=torch.long)
        window_valid = torch.zeros((len(rows), width), dtype=torch.bool)
        for r, row in enumerate(rows):
            n = len(row.ids)
            if not 0 <= row.window_start < n:
                raise ValueError(f"window_start {row.window_start} outside a sequence of {n} tokens")
            tokens[r, :n] = torch.tensor(row.ids)
            key_valid[r, :n] = True
            span = torch.arange(row.window_start, n)
            window[r, : len(span)] = span
            window[r, len(span) :] = n - 1
            window_valid[r, : len(span)] = True
        probe = _Probe(window.to(self.device), window_valid.to(self.device), key_valid.to(self.device), [])
        _active.probe = probe
        try:
            with attention_backends():
                self.model(
                    input_ids=tokens.to(self.device),
                    attention_mask=key_valid.to(self.device).long(),
                    use_cache=False,
                    logits_to_keep=1,
                )
        finally:
            _active.probe = None
        if len(probe.mass) != self.num_layers:
            raise RuntimeError(f"attention probe saw {len(probe.mass)} of {self.num_layers} layers")
        stacked = torch.stack(probe.mass, dim=1).cpu().numpy()  # [B, layers, L]
        return [stacked[r, :, : len(row.ids)] for r, row in enumerate(rows)]


def _install_probe(model: torch.nn.Module) -> None:
    """Register the probe attention function (once per process) and route ``model``'s attention through it."""
    from transformers import AttentionInterface

    global _registered
    with _register_lock:
        if not _registered:
            AttentionInterface.register(_PROBE_NAME, _probe_attention)
            _registered = True
        if getattr(model.config, "_attn_implementation", None) != _PROBE_NAME:
            model.set_attn_implementation(_PROBE_NAME)


def naive_window_attention(model: torch.nn.Module, ids: list[int], window_start: int) -> np.ndarray:
    """Reference for tests: full eager attention matrices (``output_attentions``), window rows averaged.

    Materialises ``[heads, L, L]`` per layer; for checking :class:`QuestionAttention` on tiny models only.
    """
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([ids], device=next(model.parameters()).device), output_attentions=True)
    finally:
        model.set_attn_implementation(previous)
    layers = [a[0, :, window_start:, :].float().mean(dim=(0, 1)) for a in out.attentions]
    return torch.stack(layers).cpu().numpy()
