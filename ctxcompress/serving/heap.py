"""HeapTrimmer: hands the C heap's free memory back to the OS after batches (glibc ``malloc_trim``), at most
once per interval.

Tensor work of ever-changing shapes leaves freed blocks scattered in glibc's heap, which keeps them: the resident
size of a serving process then follows the high-water mark of its largest batches, not what it holds. Measured
on the 2-core EPYC (session 13): a 10-minute CPU soak of ``serve --workers 2`` (``hybrid``, 20 NQ documents, chunk
cache off) grew from 2.6 to 4.6 GB and was still growing, while in one process 400 such requests in batches of 8
held 1.29 GB, of which one ``malloc_trim(0)`` returned 0.62 GB (eval/results/soak_cpu_serve/). Where the C
library has no ``malloc_trim`` (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable

__all__ = ["HeapTrimmer", "malloc_trim"]


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim(pad)``, or None where the C library lacks it."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class HeapTrimmer:
    """``maybe_trim()`` after each batch trims when ``interval_s`` has passed since the last trim (thread-safe;
    a trim takes milliseconds and holds the allocator's lock meanwhile, so it is rate-limited, not per batch)."""

    def __init__(
        self,
        interval_s: float = 5.0,
        trim: Callable[[int], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._trim = trim if trim is not None else malloc_trim()
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()
        self.trims = 0

    def maybe_trim(self) -> bool:
        if self._trim is None:
            return False
        with self._lock:
            now = self._clock()
            if now - self._last < self.interval_s:
                return False
            self._last = now
            self._trim(0)
            self.trims += 1
            return True
