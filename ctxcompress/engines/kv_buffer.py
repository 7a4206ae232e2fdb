"""KVBuffer: preallocated key/value storage for a batch of scoring streams, appended in place.

A transformers cache grows by concatenation, which copies every layer's whole cache on each forward pass; for
iterative scoring (many short windows over a long prefix) those copies cost more device time than the matrix
products. KVBuffer allocates each layer's ``[batch, heads, capacity, head_dim]`` buffers once, writes a forward
pass's new keys/values after the committed slots, and :meth:`commit` compacts the kept window entries in place.
It implements the part of the cache protocol the decoder layers call (``update``, ``get_seq_length``).
"""

from __future__ import annotations

import torch

__all__ = ["KVBuffer"]


class KVBuffer:
    """In-place KV cache. ``length`` slots are committed; a forward pass may append up to the capacity."""

    is_compileable = False

    def __init__(self, num_layers: int, capacity: int) -> None:
        self.capacity = capacity
        self.length = 0
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.is_sliding = [False] * num_layers

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, cache_kwargs: object = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write a pass's keys/values after the committed slots; return everything visible to the pass."""
        width = key_states.shape[2]
        end = self.length + width
        if end > self.capacity:
            raise ValueError(f"KVBuffer overflow: {end} slots > capacity {self.capacity}")
        if self.keys[layer_idx] is None:
            shape = (*key_states.shape[:2], self.capacity, key_states.shape[3])
            self.keys[layer_idx] = key_states.new_empty(shape)
            self.values[layer_idx] = value_states.new_empty((*shape[:3], value_states.shape[3]))
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        assert keys is not None and values is not None
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
        for buffers in (self.keys, self.values):
            for tensor in buffers:
                if tensor is None:
                    continue
                gather = index[:, None, :, None].expand(-1, tensor.shape[1], -1, tensor.shape[3]) + self.length
                tensor[:, :, self.length : self.length + slots] = tensor.gather(2, gather)
        self.length += slots

    def expanded(self, batch: int, extra_capacity: int) -> KVBuffer:
        """A copy of this single-stream buffer for ``batch`` streams, with room for ``extra_capacity`` more."""
        copy = KVBuffer(len(self.keys), self.length + extra_capacity)
        copy.length = self.length
        for layer, (keys, values) in enumerate(zip(self.keys, self.values, strict=True)):
            if keys is None or values is None:
                continue
            new_keys = keys.new_empty((batch, keys.shape[1], copy.capacity, keys.shape[3]))
            new_values = values.new_empty((batch, values.shape[1], copy.capacity, values.shape[3]))
            new_keys[:, :, : self.length] = keys[:1, :, : self.length]
            new_values[:, :, : self.length] = values[:1, :, : self.length]
            copy.keys[layer], copy.values[layer] = new_keys, new_values
        return copy
