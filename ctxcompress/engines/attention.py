"""QuestionAttention: how much attention the question pays to every context token, from one prefill of a small LM.

The KV-cache literature keeps the tokens that attention says matter: heavy hitters (H2O, Zhang et al. 2023),
an observation window of the last queries (SnapKV, Li et al. 2024), LazyLLM, Expected Attention. Applied to the
*input* of a RAG prompt this is a relevance signal (Sentinel, arXiv:2505.23277; QUITO, arXiv:2408.00274): put the
question after the context, run one prefill, and read the softmax attention from the question's tokens (the
observation window) to each context token.

How, without materialising attention for the whole sequence: each layer's rotated queries and keys go to the
probe, which computes the softmax of the *observation rows only* against that layer's keys —
``[rows, heads, window, length]``, never ``[length, length]`` — and keeps the per-key mass (mean over the
window's queries and the heads). Two ways to run the prefill:

* the scorer's fused decoder (``engines/fused_llama.py``, Llama family), which hands each layer's queries and keys
  to an observer: the same fewer, larger kernels as the scorer's own passes (the default where it applies);
* any architecture: the model's transformers modules with a registered attention function
  (``AttentionInterface``, public API) that computes the layer's output with SDPA as usual and, while a probe is
  active on the calling thread, reads the window rows too. Outside a probe it is plain SDPA, so the scorer's own
  passes are unchanged.

Rows are batched right-padded by a padded-token budget (``ctxcompress.engines.batching``), longest first, and run
without a padding mask: attention is causal and padding only follows a row's tokens, so no real token sees it.
On CUDA a batch is host-bound (one forward is ~1,000 small kernels), so passes run at bucketed static shapes
(rows as in ``engines/cuda_graphs.py``, length to a multiple of :data:`LENGTH_STEP`, window to
:data:`WINDOW_STEP`), each recorded once as a CUDA graph and replayed; ``graphs="on"`` on CPU runs the same
static shapes eagerly (how tests check them).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ctxcompress.engines.attention_plan import AttentionPlan, Decoder, attention_backends
from ctxcompress.engines.batching import PADDING_TOLERANCE, plan_batches
from ctxcompress.engines.cuda_graphs import rows_bucket, run_static_pass
from ctxcompress.engines.fused_llama import FusedLlamaDecoder
from ctxcompress.engines.transfers import copy_to_device, to_host
from ctxcompress.engines.vocab_head import VocabHead

__all__ = [
    "LENGTH_STEP",
    "WINDOW_STEP",
    "ObservedSequence",
    "QuestionAttention",
    "WindowReading",
    "naive_window_attention",
]

LENGTH_STEP = 64
WINDOW_STEP = 16
MAX_GRAPHS = 32
GRAPH_MAX_TOKENS = 16_384
"""Passes up to this many padded tokens (row bucket x length) run at static shapes as CUDA graphs; larger ones
are compute-bound (launch overhead is noise there) and run at exact shapes: a graph keeps its buffers and pool
for good, so capturing the large passes of overload batches made GPU memory step up with batch size."""

_PROBE_NAME = "ctxcompress_probe"
_active = threading.local()
_register_lock = threading.Lock()
_registered = False


@dataclass(frozen=True)
class ObservedSequence:
    """Token ids of one prompt; queries at positions ``[window_start, len(ids))`` observe the keys before them."""

    ids: list[int]
    window_start: int


@dataclass(frozen=True)
class WindowReading:
    """What one prefill says about a sequence's observation window."""

    attention: np.ndarray  # [num_layers, len(ids)]: attention mass per token from the window's queries
    nll: np.ndarray  # [len(ids) - window_start]: NLL of each window token given all before it (NaN at position 0)


@dataclass
class _Inputs:
    """One pass's device inputs (at a static shape, the buffers its graph reads) and, once run, its output."""

    tokens: torch.Tensor  # [B, L] right-padded
    window: torch.Tensor  # [B, W]
    window_valid: torch.Tensor  # [B, W]
    key_valid: torch.Tensor  # [B, L]
    positions: torch.Tensor  # [B, L] rotary positions (0, 1, ...: rows are right-padded)
    output: torch.Tensor | None = None  # [B, layers·L (+ W with the window NLL)]
    graph: torch.cuda.CUDAGraph | None = None
    capturable: bool = True


@dataclass
class _Probe:
    window: torch.Tensor  # [B, W] positions of each row's observation queries (padded with the last one)
    window_valid: torch.Tensor  # [B, W] bool
    key_valid: torch.Tensor  # [B, L] bool: real tokens
    layers: frozenset[int] | None  # the layers to read (None: all)
    mass: dict[int, torch.Tensor] = field(default_factory=dict)  # per read layer [B, L] float32
    seen: int = 0  # layers observed so far: the index of the next one

    def observe(
        self,
        layer: int,
        query: torch.Tensor,
        key: torch.Tensor,
        scaling: float | None = None,
        sliding_window: int | None = None,
    ) -> None:
        """Layer ``layer``'s queries ``[B, heads, L, d]`` and keys ``[B, kv_heads, L, d]``; layers come in order."""
        if layer != self.seen:
            raise RuntimeError(f"attention probe expected layer {self.seen}, got {layer}")
        self.seen += 1
        if self.layers is None or layer in self.layers:
            self.mass[layer] = _window_mass(self, query, key, scaling, sliding_window)


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
        probe.observe(probe.seen, query, key, scaling, getattr(module, "sliding_window", None))
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def _window_mass(
    probe: _Probe, query: torch.Tensor, key: torch.Tensor, scaling: float | None, sliding_window: int | None
) -> torch.Tensor:
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
    return weights.sum(dim=(1, 2)) / (heads * counted)


class QuestionAttention:
    """Observation-window attention over the context, per layer, from a causal LM's prefill.

    Args:
        model: a transformers causal LM (any architecture whose attention goes through ``AttentionInterface``).
        pad_id: token used to right-pad rows.
        max_pass_tokens: padded tokens per forward pass.
        graphs: ``auto``: static shapes replayed as CUDA graphs on CUDA, exact shapes on CPU; ``on``: static
            shapes everywhere (captured on CUDA only); ``off``: exact shapes, eager. Passes larger than
            :data:`GRAPH_MAX_TOKENS` always run at exact shapes.
        decoder: the scorer's decoder over ``model``; a fused one runs the prefills, any other is not used (the
            model's own modules run them with the probe attention function).
        head: the scorer's vocabulary head (``engines/vocab_head.py``): :meth:`read_windows` then also gives the
            NLL of the window's tokens from the same prefill.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        pad_id: int,
        max_pass_tokens: int = 8192,
        graphs: str = "auto",
        decoder: Decoder | None = None,
        head: VocabHead | None = None,
    ):
        if graphs not in ("auto", "on", "off"):
            raise ValueError(f"unknown graphs setting {graphs!r}: use auto, on or off")
        self.model = model
        self.pad_id = pad_id
        self.max_pass_tokens = max_pass_tokens
        self.device = next(model.parameters()).device
        self.num_layers = int(model.config.num_hidden_layers)
        self.static_shapes = graphs == "on" or (graphs == "auto" and self.device.type == "cuda")
        self.capture = self.static_shapes and self.device.type == "cuda"
        self.captured = 0
        self.tokens_processed = 0  # prefill tokens (real, not padding), for throughput accounting
        self._shapes: dict[tuple[int, int, int, frozenset[int] | None, bool], _Inputs] = {}
        self._lock = threading.Lock()  # static buffers serve one pass at a time
        self._counter_lock = threading.Lock()
        self._pool = torch.cuda.graph_pool_handle() if self.capture else None
        self.decoder = decoder if isinstance(decoder, FusedLlamaDecoder) else None
        self.head = head
        if self.decoder is None:
            _install_probe(model)

    def window_attention(
        self,
        sequences: Sequence[ObservedSequence],
        layers: Sequence[int] | None = None,
        *,
        while_running: Callable[[], object] | None = None,
    ) -> list[np.ndarray]:
        """Per sequence, ``[num_layers, len(ids)]``: the attention mass each token receives from the window's
        queries, averaged over the window and the heads (rows of one layer sum to 1 over the visible keys).
        ``layers``: read only these (negative counts from the top); the other layers' rows are zero.
        ``while_running``: host work called once, while the last pass runs on the device (CPU work overlaps it)."""
        readings = self.read_windows(sequences, layers, nll=False, while_running=while_running)
        return [reading.attention for reading in readings]

    @torch.inference_mode()
    def read_windows(
        self,
        sequences: Sequence[ObservedSequence],
        layers: Sequence[int] | None = None,
        *,
        nll: bool = True,
        while_running: Callable[[], object] | None = None,
    ) -> list[WindowReading]:
        """:meth:`window_attention` and, with ``nll``, each window token's NLL from the same prefill (the hidden
        states go through the vocabulary head at the window's positions only; needs ``head``); without, NaN."""
        if nll and self.head is None:
            raise ValueError("window NLL needs the scorer's vocabulary head (QuestionAttention(head=...))")
        read = None if layers is None else frozenset(layer % self.num_layers for layer in layers)
        empty = WindowReading(np.zeros((self.num_layers, 0), dtype=np.float32), np.zeros(0, dtype=np.float32))
        out: list[WindowReading] = [empty] * len(sequences)
        lengths = [len(s.ids) for s in sequences]
        batches = plan_batches(lengths, max_padded_tokens=self.max_pass_tokens, padding_tolerance=PADDING_TOLERANCE)
        queued = []  # every pass is queued before the first is read: the device never waits for the host's reads
        for b, batch in enumerate(batches):
            rows = [sequences[i] for i in batch]
            last = b == len(batches) - 1
            queued.append((batch, rows, *self._queue(rows, read, nll, while_running if last else None)))
        for batch, rows, packed, length in queued:
            for i, reading in zip(batch, self._unpack(rows, to_host(packed), length, nll), strict=True):
                out[i] = reading
        if not batches and while_running is not None:
            while_running()
        return out

    def _queue(
        self,
        rows: list[ObservedSequence],
        layers: frozenset[int] | None,
        nll: bool,
        while_running: Callable[[], object] | None,
    ) -> tuple[torch.Tensor, int]:
        """One pass over ``rows`` queued on the device: its packed output (still on the device for an eager pass; a
        static pass's, whose buffers the next pass reuses, already on the host) and the padded length."""
        for row in rows:
            if not 0 <= row.window_start < len(row.ids):
                raise ValueError(f"window_start {row.window_start} outside a sequence of {len(row.ids)} tokens")
        length = max(len(r.ids) for r in rows)
        width = max(len(r.ids) - r.window_start for r in rows)
        static_length = -(-length // LENGTH_STEP) * LENGTH_STEP
        if not self.static_shapes or rows_bucket(len(rows)) * static_length > GRAPH_MAX_TOKENS:
            inputs = self._fill(self._buffers(len(rows), length, width), rows)
            packed = self._pass(inputs, layers, nll)
            if while_running is not None:
                while_running()
        else:
            length = static_length
            width = -(-width // WINDOW_STEP) * WINDOW_STEP
            key = (rows_bucket(len(rows)), length, width, layers, nll)
            with self._lock:
                if key not in self._shapes:
                    self._shapes[key] = self._buffers(*key[:3])
                inputs = self._fill(self._shapes[key], rows)
                record = self.capture and self.captured < MAX_GRAPHS
                run = lambda: self._pass(inputs, layers, nll)  # noqa: E731
                self.captured += run_static_pass(inputs, run, record=record, device=self.device, pool=self._pool)
                assert inputs.output is not None
                if while_running is not None:
                    while_running()
                packed = to_host(inputs.output[: len(rows)])
        with self._counter_lock:
            self.tokens_processed += sum(len(row.ids) for row in rows)
        return packed, length

    def _unpack(
        self, rows: list[ObservedSequence], packed: torch.Tensor, length: int, nll: bool
    ) -> list[WindowReading]:
        """Each row's reading from its pass's packed output on the host (:meth:`_pass` gives the layout)."""
        host = packed.float().numpy()
        attention = host[:, : self.num_layers * length].reshape(len(rows), self.num_layers, length)
        window_nll = host[:, self.num_layers * length :]
        return [
            WindowReading(
                attention[r, :, : len(row.ids)],
                window_nll[r, : len(row.ids) - row.window_start] if nll else np.full(0, np.nan, dtype=np.float32),
            )
            for r, row in enumerate(rows)
        ]

    def _buffers(self, rows: int, length: int, width: int) -> _Inputs:
        make = dict(device=self.device)
        return _Inputs(
            tokens=torch.full((rows, length), self.pad_id, dtype=torch.long, **make),
            window=torch.zeros((rows, width), dtype=torch.long, **make),
            window_valid=torch.zeros((rows, width), dtype=torch.bool, **make),
            key_valid=torch.zeros((rows, length), dtype=torch.bool, **make),
            positions=torch.arange(length, **make).expand(rows, length),
        )

    def _fill(self, inputs: _Inputs, rows: list[ObservedSequence]) -> _Inputs:
        """Write ``rows`` into ``inputs`` (extra rows: padding whose first key is visible, so no empty softmax).
        Built as whole host arrays (no per-row tensor ops): a row's keys are its tokens, its window the positions
        ``window_start .. len(ids) - 1``, padded with the last."""
        n_rows, length = inputs.tokens.shape
        width = inputs.window.shape[1]
        lengths = np.array([len(row.ids) for row in rows], dtype=np.int64)
        starts = np.array([row.window_start for row in rows], dtype=np.int64)
        key_valid = np.zeros((n_rows, length), dtype=bool)
        key_valid[:, 0] = True
        key_valid[: len(rows)] = np.arange(length) < lengths[:, None]
        tokens = np.full((n_rows, length), self.pad_id, dtype=np.int64)
        tokens[: len(rows)][key_valid[: len(rows)]] = np.fromiter(
            itertools.chain.from_iterable(row.ids for row in rows), dtype=np.int64, count=int(lengths.sum())
        )
        window = np.zeros((n_rows, width), dtype=np.int64)
        window[: len(rows)] = np.minimum(starts[:, None] + np.arange(width), lengths[:, None] - 1)
        window_valid = np.zeros((n_rows, width), dtype=bool)
        window_valid[: len(rows)] = np.arange(width) < (lengths - starts)[:, None]
        for target, source in (
            (inputs.tokens, tokens),
            (inputs.key_valid, key_valid),
            (inputs.window, window),
            (inputs.window_valid, window_valid),
        ):
            copy_to_device(target, torch.from_numpy(source))
        return inputs

    def _pass(self, inputs: _Inputs, layers: frozenset[int] | None, nll: bool) -> torch.Tensor:
        """One prefill read by a probe: ``[B, num_layers·L]`` float32 attention mass per layer and token, then
        with ``nll`` ``[B, W]`` the window tokens' NLL (one output tensor: what a CUDA graph records)."""
        probe = _Probe(inputs.window, inputs.window_valid, inputs.key_valid, layers)
        if self.decoder is not None:
            # Right-padded rows without a cache: plainly causal (the fused decoder needs no mask).
            length = inputs.tokens.shape[1]
            causal = torch.ones((length, length), dtype=torch.bool, device=self.device).tril()[None]
            plan = AttentionPlan(causal, causal_only=True, positions=inputs.positions, kv_positions=inputs.positions)
            with attention_backends():
                hidden = self.decoder(inputs.tokens, plan, None, observer=probe.observe)
        else:
            _active.probe = probe
            try:
                with attention_backends():
                    hidden = self.model.base_model(input_ids=inputs.tokens, use_cache=False).last_hidden_state
            finally:
                _active.probe = None
        if probe.seen != self.num_layers:
            raise RuntimeError(f"attention probe saw {probe.seen} of {self.num_layers} layers")
        blank = torch.zeros(inputs.key_valid.shape, dtype=torch.float32, device=self.device)
        attention = torch.stack([probe.mass.get(layer, blank) for layer in range(self.num_layers)], dim=1)
        if not nll:
            return attention.flatten(1)
        return torch.cat([attention.flatten(1), self._window_nll(hidden, inputs)], dim=1)

    def _window_nll(self, hidden: torch.Tensor, inputs: _Inputs) -> torch.Tensor:
        """``[B, W]`` NLL of each window token given the hidden state before it (NaN at position 0)."""
        assert self.head is not None
        batch, width = inputs.window.shape
        before = (inputs.window - 1).clamp(min=0)
        predictors = hidden.gather(1, before[..., None].expand(batch, width, hidden.shape[-1]))
        targets = inputs.tokens.gather(1, inputs.window)
        values = self.head.nll(predictors.reshape(batch * width, -1), targets.reshape(-1)).view(batch, width)
        return values.masked_fill(inputs.window == 0, float("nan"))


def _install_probe(model: torch.nn.Module) -> None:
    """Register the probe attention function (once per process) and route ``model``'s attention through it."""
    from transformers import AttentionInterface

    global _registered
    with _register_lock:
        if not _registered:
            from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

            AttentionInterface.register(_PROBE_NAME, _probe_attention)
            # SDPA's masks (None for plain causal layers; the window for sliding-window layers, Gemma 3).
            AttentionMaskInterface.register(_PROBE_NAME, sdpa_mask)
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
