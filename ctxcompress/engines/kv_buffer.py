"""KVBuffer: preallocated key/value storage for a batch of scoring streams, appended in place.

A transformers cache grows by concatenation, which copies every layer's whole cache on each forward pass; for
iterative scoring (many short windows over a long prefix) those copies cost more device time than the matrix
products. KVBuffer holds all layers' keys and values in one ``[2, layers, rows, heads, capacity, head_dim]``
tensor, writes a forward pass's new keys/values after the committed slots, and :meth:`commit` compacts the kept
window entries in place with one gather over every layer. It implements the part of transformers' cache protocol
the decoder layers call: ``update(keys, values, layer_idx, *args, **kwargs)`` (extra arguments, which differ
between releases — ``cache_kwargs`` up to 5.23, ``kwargs`` from 5.24 — are accepted and unused) and
``get_seq_length``. The supported transformers range is pinned in ``pyproject.toml`` and checked against the
newest releases by ``scripts/check_newest_deps.sh``.

A *static* buffer (``engines/cuda_graphs.py``) is a view of a preallocated arena with bucketed rows and
capacity; passes over it run at fixed shapes (and replay as CUDA graphs), so it may have more rows than the
streams using it. Its owner lends it out; :meth:`release` hands it back.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["KVBuffer"]


class KVBuffer:
    """In-place KV cache. ``length`` slots are committed; a forward pass may append up to the capacity."""

    is_compileable = False

    def __init__(
        self,
        num_layers: int,
        capacity: int,
        *,
        storage: torch.Tensor | None = None,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        self.num_layers = num_layers
        self.capacity = capacity
        self.length = 0
        self.storage = storage  # [2, layers, rows, heads, capacity, head_dim]; allocated on first update if None
        self.static = storage is not None
        self.is_sliding = [False] * num_layers
        self._on_release = on_release

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *_: object, **__: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write a pass's keys/values after the committed slots; return everything visible to the pass."""
        if self.static:
            raise RuntimeError("a static KVBuffer is written by its static-shape runner, not by update()")
        width = key_states.shape[2]
        end = self.length + width
        if end > self.capacity:
            raise ValueError(f"KVBuffer overflow: {end} slots > capacity {self.capacity}")
        if key_states.shape[-1] != value_states.shape[-1]:
            raise ValueError("KVBuffer needs keys and values of the same head size")
        if self.storage is None:
            rows, heads, _, dim = key_states.shape
            self.storage = key_states.new_empty((2, self.num_layers, rows, heads, self.capacity, dim))
        keys, values = self.storage[0, layer_idx], self.storage[1, layer_idx]
        keys[:, :, self.length : end] = key_states
        values[:, :, self.length : end] = value_states
        return keys[:, :, :end], values[:, :, :end]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def commit(self, index: torch.Tensor) -> None:
        """Keep window entries ``index`` ([batch, slots] offsets into the last pass) as the next slots."""
        slots = index.shape[1]
        if slots == 0:
            return
        if self.storage is None:
            raise RuntimeError("commit before any forward pass wrote to the KVBuffer")
        two, layers, rows, heads, _, dim = self.storage.shape
        if index.shape[0] < rows:  # rows a static buffer holds beyond the streams: their content is unused
            index = F.pad(index, (0, 0, 0, rows - index.shape[0]))
        gather = (index + self.length)[None, None, :, None, :, None].expand(two, layers, rows, heads, slots, dim)
        self.storage[:, :, :, :, self.length : self.length + slots] = self.storage.gather(4, gather)
        self.length += slots

    def fill_from(self, source: KVBuffer, rows: int) -> None:
        """Copy ``source``'s committed slots (one stream) into ``rows`` rows of this empty buffer."""
        if source.storage is None or source.length == 0:
            return
        if source.length > self.capacity:
            raise ValueError(f"KVBuffer overflow: {source.length} slots > capacity {self.capacity}")
        if self.storage is None:
            two, layers, _, heads, _, dim = source.storage.shape
            self.storage = source.storage.new_empty((two, layers, rows, heads, self.capacity, dim))
        self.storage[:, :, :, :, : source.length] = source.storage[:, :, :1, :, : source.length]
        self.length = source.length

    def release(self) -> None:
        """Hand a static buffer back to its owner (no-op for an eager one); call once, when done with it."""
        if self._on_release is not None:
            release, self._on_release = self._on_release, None
            release()
