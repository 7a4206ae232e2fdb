"""ChunkCache: question-independent work per chunk (document), reused when the same chunk comes back.

RAG traffic repeats popular chunks: the same retrieved passage reaches the compressor with many questions. What an
engine computes from a chunk alone (here: the sentence encoder's in-context vectors of the chunk and of its
sentences, the main cost of ``hybrid`` and ``cpc`` on CPU) is kept under a key made of the chunk's text hash and
everything else the value depends on (model, parameters, sentence spans). Bounded by bytes, least recently used first
out. A cached value is what the engine computed for that chunk on the same model, so a result never depends on what
ran before (the encoder computes every chunk in rows of its own; ``tests/unit_tests/test_chunk_cache.py`` checks
equality).

Counters (hits, misses, evictions, bytes, entries) are summed over every cache of the process by :func:`totals`,
which the serving engine reports in its stats (``/metrics``: ``ctxcompress_chunk_cache_*``).
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

__all__ = ["CacheTotals", "ChunkCache", "text_key", "totals"]

_live: weakref.WeakSet[ChunkCache] = weakref.WeakSet()


@dataclass(frozen=True)
class CacheTotals:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    bytes: int = 0
    entries: int = 0


def text_key(text: str, *parts: Hashable) -> tuple[Hashable, ...]:
    """A cache key: the SHA-256 of ``text`` (so keys stay small) and the other things the value depends on."""
    return (hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(), *parts)


class ChunkCache:
    """A thread-safe LRU map bounded by ``capacity_bytes`` (``size_of(value)`` per entry); 0 disables it."""

    def __init__(self, capacity_bytes: int, size_of: Callable[[Any], int]) -> None:
        if capacity_bytes < 0:
            raise ValueError("capacity_bytes must be >= 0")
        self.capacity_bytes = capacity_bytes
        self._size_of = size_of
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = self._hits = self._misses = self._evictions = 0
        _live.add(self)

    @property
    def enabled(self) -> bool:
        return self.capacity_bytes > 0

    def get(self, key: Hashable) -> Any | None:
        if not self.enabled:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry[0]

    def put(self, key: Hashable, value: Any) -> None:
        size = self._size_of(value)
        if not self.enabled or size > self.capacity_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.capacity_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
                self._evictions += 1

    def clear(self) -> None:
        """Drop every entry (the counters stay)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def totals(self) -> CacheTotals:
        with self._lock:
            return CacheTotals(self._hits, self._misses, self._evictions, self._bytes, len(self._entries))


def totals() -> CacheTotals:
    """Counters summed over every live cache of this process."""
    parts = [cache.totals() for cache in list(_live)]
    fields = ("hits", "misses", "evictions", "bytes", "entries")
    return CacheTotals(*(sum(getattr(p, f) for p in parts) for f in fields))
