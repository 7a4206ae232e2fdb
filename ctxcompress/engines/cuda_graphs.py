"""StaticShapeRunner: small forward passes at bucketed static shapes, captured once as CUDA graphs and replayed.

A single request is launch-bound on a GPU: one forward pass of a 30-layer model is ~750 kernel launches of a few
microseconds of work each, so the host's launch overhead, not the device, sets the latency. A CUDA graph records
a pass once and replays all of its kernels with one launch. Graphs need fixed shapes and fixed addresses, so:

* batch rows round up to a bucket (1, 2, 4, 8, then multiples of 8), pass width to a multiple of
  :data:`WIDTH_STEP`; padded rows/columns hold the pad token and see only their own slot;
* all static caches are views of one preallocated KV arena, laid out by the row bucket alone (``rows x
  max_tokens // rows`` slots), so the same graphs serve every request with that many streams; the arena is
  zeroed where lent (masked slots must be finite) and lent to one user at a time (a second concurrent user gets
  an ordinary eager buffer);
* the pass writes its keys/values at device-side slot indices (``offset + arange(width)``) and attends, with a
  mask copied into the graph's input buffer, over the first ``visible`` slots: the written ones rounded up to
  :data:`VISIBLE_STEP`, so attention work follows the cache's fill, not its capacity;
* one graph per shape ``(rows, width, visible, causal)``, all sharing one memory pool, up to ``max_graphs``.

On CPU (no CUDA graphs) ``capture=False`` runs the very same static-shape pass eagerly: that is how CPU tests
check it against the plain path. Same idea as vLLM's captured decode batch sizes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from ctxcompress.engines.attention_plan import AttentionPlan, Decoder
from ctxcompress.engines.kv_buffer import KVBuffer

__all__ = [
    "VISIBLE_STEP",
    "WIDTH_STEP",
    "RecordablePass",
    "StaticShapeRunner",
    "capture_graph",
    "rows_bucket",
    "run_static_pass",
]

WIDTH_STEP = 32
VISIBLE_STEP = 128

# One capture at a time in a process. Two devices' worker threads capturing at once invalidated each other's
# capture on a 2-GPU host (cudaErrorStreamCaptureInvalidated, then an abort in the CUDA generator's graph
# registry, which is process-wide). Replays and eager passes on other threads may run during a capture.
_CAPTURING = threading.Lock()


def capture_graph(
    run: Callable[[], torch.Tensor], device: torch.device, pool: object
) -> tuple[torch.Tensor, torch.cuda.CUDAGraph | None]:
    """``run()`` once on a side stream (its result is returned), then recorded as a CUDA graph whose output
    buffer holds that result. A pass that cannot be captured returns ``(result, None)``: it stays eager.

    The capture runs on one stream per device (:func:`_capture_stream`): ``torch.cuda.graph``'s own default
    capture stream is one per process, made on whichever device captured first, and a capture on another device
    through it records an empty graph (the kernels run eagerly on that device's stream; every replay then does
    nothing). One stream per device, not one per capture: a graph pool's freed blocks are reused per stream, and
    the first fix, with a new stream per capture, ran the H200 bench out of memory."""
    with _CAPTURING, torch.cuda.device(device):
        current = torch.cuda.current_stream(device)
        side = _capture_stream(device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            warm = run()
        current.wait_stream(side)
        torch.cuda.synchronize(device)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=pool, stream=side, capture_error_mode="thread_local"):
                output = run()
        except RuntimeError:
            return warm, None
        # Recording ran nothing: the output buffer gets the warm-up's result.
        output.copy_(warm)
        return output, graph


class RecordablePass(Protocol):
    """One static shape's pass state: its output buffer and, once recorded, its CUDA graph."""

    output: torch.Tensor | None
    graph: torch.cuda.CUDAGraph | None
    capturable: bool  # False after a failed recording (e.g. out of memory): the shape then runs eagerly


def run_static_pass(
    shape: RecordablePass, run: Callable[[], torch.Tensor], *, record: bool, device: torch.device, pool: object
) -> bool:
    """Run a static shape's pass into ``shape.output``: replay its graph once recorded; else, when ``record``
    (and no recording of this shape failed before), run and record it (:func:`capture_graph`); else run ``run()``
    eagerly. Returns whether a graph was recorded now (the caller counts them against its limit)."""
    if shape.graph is not None:
        shape.graph.replay()
        return False
    if record and shape.capturable:
        shape.output, shape.graph = capture_graph(run, device, pool)
        shape.capturable = shape.graph is not None
        return shape.graph is not None
    shape.output = run()
    return False


_CAPTURE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _capture_stream(device: torch.device) -> torch.cuda.Stream:
    """This process's capture stream on ``device`` (made on first use; callers hold ``_CAPTURING``)."""
    key = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
    if key not in _CAPTURE_STREAMS:
        _CAPTURE_STREAMS[key] = torch.cuda.Stream(key)
    return _CAPTURE_STREAMS[key]


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def rows_bucket(batch: int) -> int:
    return 1 << max(batch - 1, 0).bit_length() if batch <= 8 else _round_up(batch, 8)


class _StaticCache:
    """The cache a static pass sees: writes at device-side slot indices, reads ``visible`` slots."""

    is_compileable = False

    def __init__(self, storage: torch.Tensor, write_index: torch.Tensor, visible: int) -> None:
        self.storage, self.write_index, self.visible = storage, write_index, visible
        self.is_sliding = [False] * storage.shape[1]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *_: object, **__: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.storage[0, layer_idx], self.storage[1, layer_idx]
        keys.index_copy_(2, self.write_index, key_states)
        values.index_copy_(2, self.write_index, value_states)
        return keys[:, :, : self.visible], values[:, :, : self.visible]


@dataclass
class _ShapeRunner:
    """Input buffers, output and (on CUDA) the captured graph of one static shape."""

    tokens: torch.Tensor  # [rows, width]
    positions: torch.Tensor  # [rows, width]
    allowed: torch.Tensor  # [rows, width, capacity] bool (unused when causal)
    offset: torch.Tensor  # [] first slot the pass writes
    output: torch.Tensor | None = None
    graph: torch.cuda.CUDAGraph | None = None
    capturable: bool = True  # False after a failed recording (e.g. out of memory): the shape then runs eagerly


class StaticShapeRunner:
    """Lends static KV caches and runs decoder passes over them at bucketed shapes (CUDA graphs on CUDA).

    Args:
        decoder: the decoder whose passes are run (it must accept the static cache and an ``AttentionPlan``).
        num_layers, kv_heads, head_dim, dtype, device: the KV cache geometry.
        pad_id: token of padded rows/columns.
        max_tokens: arena size in cache slots (rows x capacity); larger caches are plain eager buffers.
        capture: record CUDA graphs (CUDA only); False runs the static passes eagerly.
        max_graphs: shapes beyond this many run eagerly at their static shape.
    """

    def __init__(
        self,
        decoder: Decoder,
        *,
        num_layers: int,
        kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
        pad_id: int,
        max_tokens: int = 16384,
        capture: bool = True,
        max_graphs: int = 64,
    ) -> None:
        if capture and device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device (capture=False runs static shapes eagerly)")
        self.decoder = decoder
        self.geometry = (num_layers, kv_heads, head_dim)
        self.dtype, self.device, self.pad_id = dtype, device, pad_id
        self.max_tokens, self.capture, self.max_graphs = max_tokens, capture, max_graphs
        self.captured = 0
        self._arena: torch.Tensor | None = None
        self._lease = threading.Lock()
        self._shapes: dict[tuple[int, int, int, bool], _ShapeRunner] = {}
        self._pool = torch.cuda.graph_pool_handle() if capture else None

    @torch.inference_mode()
    def allocate(self, batch: int, capacity: int) -> KVBuffer | None:
        """A static cache for ``batch`` streams of ``capacity`` slots, or None (too large, or lent out).

        It holds ``max_tokens // rows`` slots per row; ``capacity`` plus :data:`WIDTH_STEP` of slack (a pass
        padded to its width bucket) must fit.
        """
        rows = rows_bucket(batch)
        slots = self.max_tokens // rows
        if capacity + WIDTH_STEP > slots or not self._lease.acquire(blocking=False):
            return None
        layers, heads, dim = self.geometry
        if self._arena is None:
            self._arena = torch.zeros(2 * layers * heads * dim * self.max_tokens, dtype=self.dtype, device=self.device)
        storage = self._arena[: 2 * layers * rows * heads * slots * dim].view(2, layers, rows, heads, slots, dim)
        used = min(slots, _round_up(capacity + WIDTH_STEP, VISIBLE_STEP))
        storage[:, :, :, :, :used].zero_()  # masked slots must hold finite values (0 x NaN would poison attention)
        return KVBuffer(layers, used, storage=storage, on_release=self._lease.release)

    @torch.inference_mode()
    def __call__(self, tokens: torch.Tensor, plan: AttentionPlan, cache: KVBuffer) -> torch.Tensor:
        """The decoder's pass of ``tokens`` ``[B, W]``; static caches run at their bucketed shape."""
        if not cache.static:
            return self.decoder(tokens, plan, cache)
        assert cache.storage is not None
        batch, width = tokens.shape
        rows = cache.storage.shape[2]
        padded_width = _round_up(width, WIDTH_STEP)
        if cache.length + padded_width > cache.capacity:
            raise ValueError(f"static KV cache overflow: {cache.length + padded_width} slots > {cache.capacity}")
        causal = plan.causal_only
        visible = padded_width if causal else min(_round_up(cache.length + padded_width, VISIBLE_STEP), cache.capacity)
        shape = self._shape(rows, padded_width, visible, causal)
        shape.tokens.fill_(self.pad_id)
        shape.tokens[:batch, :width].copy_(tokens)
        shape.positions[:batch, :width].copy_(plan.positions)
        if not causal:
            shape.allowed.zero_()
            shape.allowed[:batch, :width, : plan.allowed.shape[-1]].copy_(plan.allowed.expand(batch, -1, -1))
        shape.offset.fill_(cache.length)
        storage = cache.storage
        record = self.capture and self.captured < self.max_graphs
        run = lambda: self._pass(shape, storage, causal)  # noqa: E731
        self.captured += run_static_pass(shape, run, record=record, device=self.device, pool=self._pool)
        assert shape.output is not None
        return shape.output[:batch, :width].clone()  # the graph overwrites its output on the next replay

    def _shape(self, rows: int, width: int, visible: int, causal: bool) -> _ShapeRunner:
        key = (rows, width, visible, causal)
        if key not in self._shapes:
            make = dict(device=self.device)
            self._shapes[key] = _ShapeRunner(
                tokens=torch.full((rows, width), self.pad_id, dtype=torch.long, **make),
                positions=torch.zeros((rows, width), dtype=torch.long, **make),
                allowed=torch.zeros((rows, width, 0 if causal else visible), dtype=torch.bool, **make),
                offset=torch.zeros((), dtype=torch.long, **make),
            )
        return self._shapes[key]

    def _pass(self, shape: _ShapeRunner, storage: torch.Tensor, causal: bool) -> torch.Tensor:
        """The static pass: what a graph records. Padded queries see their own slot (no empty softmax rows)."""
        width = shape.tokens.shape[1]
        write_index = shape.offset + torch.arange(width, device=self.device)
        if causal:  # no cache before the pass: plain causal attention over the pass's own slots
            allowed = shape.allowed
            cache = _StaticCache(storage, write_index, width)
        else:
            visible = shape.allowed.shape[2]
            own_slot = torch.arange(visible, device=self.device)[None, None, :] == write_index[None, :, None]
            allowed = shape.allowed | own_slot
            cache = _StaticCache(storage, write_index, visible)
        plan = AttentionPlan(allowed, causal_only=causal, positions=shape.positions, kv_positions=shape.positions)
        return self.decoder(shape.tokens, plan, cache)  # type: ignore[arg-type]
