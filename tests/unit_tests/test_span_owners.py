"""Late chunking's piece → span assignment (engines/encoder.py): all texts in one search equal a search per text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctxcompress.engines.encoder import _piece_owners


@st.composite
def text_pieces_and_spans(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """One text: word pieces as character (start, end) pairs (empty ones too, like special tokens) and sorted,
    non-overlapping spans that may leave gaps (a header, whitespace) or be absent."""
    cuts = sorted(draw(st.sets(st.integers(0, 200), max_size=12)))
    spans = [(a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if a < b]
    starts = draw(st.lists(st.integers(0, 205), max_size=20))
    pieces = [(s, s + draw(st.integers(0, 6))) for s in starts]
    return pieces, spans


def _per_text(offsets: list, spans: list) -> np.ndarray:
    """The rule one piece at a time: the span of the piece's own text whose [start, end) holds its last character
    (max(start, end - 1)), as a global span index; -1 for none."""
    out, first_span = [], 0
    for text_offsets, text_spans in zip(offsets, spans, strict=True):
        for start, end in text_offsets:
            last = max(start, end - 1)
            held = [i for i, (a, b) in enumerate(text_spans) if a <= last < b]
            out.append(first_span + held[0] if held else -1)
        first_span += len(text_spans)
    return np.array(out, dtype=np.int64)


@given(st.lists(text_pieces_and_spans(), max_size=6))
def test_one_search_over_all_texts_equals_a_search_per_text(texts: list) -> None:
    offsets, spans = [p for p, _ in texts], [s for _, s in texts]
    np.testing.assert_array_equal(_piece_owners(offsets, spans), _per_text(offsets, spans))


def test_a_piece_is_owned_by_the_span_holding_its_last_character_in_its_own_text_only() -> None:
    offsets = [[(0, 3), (4, 9), (9, 10)], [(0, 2), (5, 8)]]
    spans = [[(0, 5)], [(3, 9)]]  # text 1's span starts after its first piece: that piece must not go to text 0
    assert _piece_owners(offsets, spans).tolist() == [0, -1, -1, -1, 1]


def test_texts_and_spans_must_pair_up() -> None:
    with pytest.raises(ValueError, match="2 texts' pieces but 1"):
        _piece_owners([[(0, 1)], [(0, 1)]], [[(0, 1)]])
