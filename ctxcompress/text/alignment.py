"""Where a kept text came from: character spans of the original document that an extractive result consists of.

Extractive methods keep whole units (words, sentences) of a document in their original order, so the kept text's
whitespace-separated pieces occur in the original in order. :func:`kept_spans` finds each piece at the first
occurrence after the previous one and merges spans separated only by whitespace. When a piece cannot be found
(abstractive text: a summary), there are no spans and it returns None.
"""

from __future__ import annotations

import re

__all__ = ["dropped_spans", "kept_spans"]

_PIECE = re.compile(r"\S+")


def kept_spans(original: str, kept: str) -> list[tuple[int, int]] | None:
    """Half-open ``(start, end)`` character spans of ``original`` whose text makes up ``kept``, in order; None when
    ``kept`` is not made of pieces of ``original``."""
    spans: list[tuple[int, int]] = []
    cursor = 0
    for match in _PIECE.finditer(kept):
        start = original.find(match.group(), cursor)
        if start < 0:
            return None
        end = start + len(match.group())
        if spans and not original[spans[-1][1] : start].strip():
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
        cursor = end
    return spans


def dropped_spans(length: int, kept: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The complement of ``kept`` in ``[0, length)``."""
    out: list[tuple[int, int]] = []
    cursor = 0
    for start, end in kept:
        if start > cursor:
            out.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < length:
        out.append((cursor, length))
    return out
