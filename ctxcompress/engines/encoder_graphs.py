"""StaticEncoderPasses: the sentence encoder's small passes at bucketed static shapes, replayed as CUDA graphs.

A lone request's MiniLM pass is launch-bound on a GPU: six layers are ~100 kernels of a few microseconds each,
issued one by one through transformers' per-module Python. As in the scorer's passes (``cuda_graphs.py``), a pass
runs on static input buffers whose shape is rounded up to a bucket (rows 1, 2, 4, 8, then multiples of 8; width a
multiple of :data:`~ctxcompress.engines.cuda_graphs.WIDTH_STEP`), is recorded once per shape and then replayed with
one launch. Padded positions are masked out of attention, so a real row's vectors do not depend on the padding
(up to float rounding). Only passes up to ``max_tokens`` padded tokens are static: a large batch is compute-bound,
and its buffers would stay reserved. The buffers serve one pass at a time; a second concurrent caller is told to
run its pass at its exact shape. On CPU (or with ``capture=False``) the same static-shape passes run eagerly: how
the tests check them against the exact path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ctxcompress.engines.cuda_graphs import WIDTH_STEP, rows_bucket, run_static_pass
from ctxcompress.engines.transfers import copy_to_device

__all__ = ["StaticEncoderPasses", "padded_inputs"]

MAX_TOKENS = 16_384
"""Padded tokens of the largest static pass (a lone NQ request's 20-25 windows of ≤ 256 pieces: ~6,000)."""
MAX_GRAPHS = 32
"""Shapes recorded per encoder; a pass of a further shape runs eagerly on its static buffers."""


@dataclass
class _Shape:
    ids: torch.Tensor  # [rows, width] static input ids
    mask: torch.Tensor  # [rows, width] static attention mask
    output: torch.Tensor | None = None  # [rows, width, dim] the recorded pass's output buffer
    graph: torch.cuda.CUDAGraph | None = None
    capturable: bool = True


class StaticEncoderPasses:
    """Runs ``forward(input_ids, attention_mask) -> [rows, width, dim]`` at bucketed static shapes.

    Args:
        forward: the encoder's pass over right-padded ids and their 0/1 attention mask.
        pad_id: the id written into padded positions.
        device: where the buffers live.
        capture: record CUDA graphs (CUDA only); otherwise the static-shape passes run eagerly.
        max_tokens: padded tokens of the largest static pass.
    """

    def __init__(
        self,
        forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        pad_id: int,
        device: torch.device,
        capture: bool,
        max_tokens: int = MAX_TOKENS,
    ) -> None:
        self.forward = forward
        self.pad_id = pad_id
        self.device = device
        self.capture = capture and device.type == "cuda"
        self.max_tokens = max_tokens
        self.captured = 0
        self._shapes: dict[tuple[int, int], _Shape] = {}
        self._lock = threading.Lock()
        self._pool = torch.cuda.graph_pool_handle() if self.capture else None

    @staticmethod
    def bucket(rows: int, longest: int) -> tuple[int, int]:
        """The static shape ``(rows, width)`` a pass of ``rows`` sequences of at most ``longest`` ids runs at."""
        return rows_bucket(rows), -(-longest // WIDTH_STEP) * WIDTH_STEP

    def fits(self, rows: int, longest: int) -> bool:
        """Whether such a pass runs at a static shape."""
        bucket_rows, width = self.bucket(rows, longest)
        return bucket_rows * width <= self.max_tokens

    def __call__(self, sequences: list[list[int]]) -> torch.Tensor | None:
        """Float32 ``[len(sequences), longest, dim]`` for right-padded ``sequences`` (each a complete input row),
        or None when another caller holds the static buffers (run the pass at its exact shape instead)."""
        longest = max(len(s) for s in sequences)
        key = self.bucket(len(sequences), longest)
        if not self._lock.acquire(blocking=False):
            return None
        try:
            shape = self._shapes.get(key)
            if shape is None:
                shape = self._shapes[key] = _Shape(
                    ids=torch.full(key, self.pad_id, dtype=torch.long, device=self.device),
                    mask=torch.zeros(key, dtype=torch.long, device=self.device),
                )
            self._fill(shape, sequences)
            record = self.capture and self.captured < MAX_GRAPHS
            run = lambda: self.forward(shape.ids, shape.mask)  # noqa: E731
            self.captured += run_static_pass(shape, run, record=record, device=self.device, pool=self._pool)
            assert shape.output is not None
            # A copy, queued on the stream behind the pass: the next pass may overwrite the static output.
            return shape.output[: len(sequences), :longest].to(torch.float32, copy=True)
        finally:
            self._lock.release()

    def _fill(self, shape: _Shape, sequences: list[list[int]]) -> None:
        """Write ``sequences`` into the static inputs."""
        ids, mask = padded_inputs(sequences, tuple(shape.ids.shape), self.pad_id)
        copy_to_device(shape.ids, ids)
        copy_to_device(shape.mask, mask)


def padded_inputs(sequences: list[list[int]], shape: tuple[int, int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Host ``(input_ids, attention_mask)`` of ``shape`` (rows, width) holding ``sequences`` right-padded; rows
    past the sequences are padding that attends to its first position (no row without a visible key)."""
    ids = torch.full(shape, pad_id, dtype=torch.long)
    mask = torch.zeros(shape, dtype=torch.long)
    mask[:, 0] = 1
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[row, : len(sequence)] = 1
    return ids, mask
