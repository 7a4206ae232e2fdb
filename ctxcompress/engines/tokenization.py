"""OffsetTokenizer: token ids and character offsets of many texts in one call to a fast tokenizer's Rust backend.

Calling a transformers tokenizer with ``return_offsets_mapping=True`` converts every encoding into Python dicts
and lists; for the 20 documents of an NQ prompt that conversion costs several times the tokenisation itself
(SmolLM2 on one core: ~20 ms through transformers, ~5 ms from the backend directly). The backend is used on a
private copy with truncation and padding switched off (sentence-transformers' MiniLM ships a tokenizer that
truncates at 128 and pads), so it returns what the transformers call returns without them.

A call over many characters is cut into ``SPLIT_PARTS`` runs of texts of about equal length, encoded at once on
this process's tokenising threads (the Rust backend releases the GIL): a lone request's documents are tokenised in
about half the time. Each text is encoded on its own either way, so the ids do not depend on the split.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["OffsetTokenizer"]

Encoding = tuple[list[int], list[tuple[int, int]]]

SPLIT_PARTS = 2
"""Runs a large call is cut into (1: never split)."""
SPLIT_MIN_CHARS = 4_000
"""Characters below which a call stays on the caller's thread (a hand-off costs ~0.1 ms; BPE encodes ~2-3 MB/s)."""

_threads: ThreadPoolExecutor | None = None
_threads_lock = threading.Lock()


def _split_threads() -> ThreadPoolExecutor:
    """This process's threads for the split runs (only backend calls run on them, so none waits on another). Made
    on first use and again in a forked child, whose copy of the parent's pool has no live threads."""
    global _threads
    with _threads_lock:
        if _threads is None:
            _threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ctxc-tokenize-split")
        return _threads


def _forget_split_threads() -> None:
    global _threads, _threads_lock
    _threads, _threads_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_split_threads)


def split_runs(lengths: Sequence[int], parts: int) -> list[range]:
    """``parts`` consecutive, non-empty runs of indices with about equal summed ``lengths`` (fewer when there are
    fewer items): each cut at the boundary whose prefix sum is nearest its share of the total."""
    parts = max(1, min(parts, len(lengths)))
    prefix = list(itertools.accumulate(lengths, initial=0))
    cuts = [0]
    for k in range(1, parts):
        target = prefix[-1] * k / parts
        # boundaries left for the runs still to come, each non-empty
        low, high = cuts[-1] + 1, len(lengths) - (parts - k)
        cuts.append(min(range(low, high + 1), key=lambda b: abs(prefix[b] - target)))
    cuts.append(len(lengths))
    return [range(a, b) for a, b in itertools.pairwise(cuts)]


class OffsetTokenizer:
    """``tokenizer(texts)`` → per text (ids, character spans), no special tokens, no truncation or padding."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._backend = None
        if backend is not None:
            from tokenizers import Tokenizer

            self._backend = Tokenizer.from_str(backend.to_str())
            self._backend.no_truncation()
            self._backend.no_padding()

    def __call__(self, texts: Sequence[str]) -> list[Encoding]:
        if not texts:
            return []
        if self._backend is not None:
            lengths = [len(t) for t in texts]
            if SPLIT_PARTS < 2 or len(texts) < 2 or sum(lengths) < SPLIT_MIN_CHARS:
                return self._encode(texts)
            first, *rest = split_runs(lengths, SPLIT_PARTS)
            queued = [_split_threads().submit(self._encode, [texts[i] for i in run]) for run in rest]
            out = self._encode([texts[i] for i in first])
            for future in queued:
                out.extend(future.result())
            return out
        enc = self._tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [
            (list(ids), [tuple(o) for o in offsets])
            for ids, offsets in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
        ]

    def _encode(self, texts: Sequence[str]) -> list[Encoding]:
        encodings = self._backend.encode_batch(list(texts), add_special_tokens=False)
        return [(list(e.ids), list(e.offsets)) for e in encodings]
