"""Subsequence recovery (LongLLMLingua, Jiang et al. 2024, §4.4).

Token pruning can leave fragments ("Wash" of "Washington", "1 2" of "1,234 2") that an LLM copies into its
answer. ``recover`` maps them back: for each longest run of response words that occurs verbatim in the
compressed prompt, it finds the shortest window of original-prompt words that contains those words, in order,
each as a substring of an original word (punctuation aside), and substitutes the original window into the response.
"""

from __future__ import annotations

import re

__all__ = ["recover"]

_WORD = re.compile(r"[^\s,.;:!?()\[\]\"]+")  # words without surrounding punctuation
_MAX_GAP = 3  # original words that may sit between two matched words (they were pruned)


def _shortest_cover(original: list[str], words: list[str]) -> tuple[int, int] | None:
    """Smallest [i, j) of ``original`` containing ``words`` in order, each inside one original word."""
    best: tuple[int, int] | None = None
    for start, candidate in enumerate(original):
        if words[0] not in candidate:
            continue
        position, matched = start, 1
        while matched < len(words) and position + 1 < len(original):
            found = next(
                (
                    k
                    for k in range(position + 1, min(position + 2 + _MAX_GAP, len(original)))
                    if words[matched] in original[k]
                ),
                None,
            )
            if found is None:
                break
            position, matched = found, matched + 1
        if matched == len(words) and (best is None or position + 1 - start < best[1] - best[0]):
            best = (start, position + 1)
    return best


def recover(original: str, compressed: str, response: str) -> str:
    """Replace fragments of the compressed prompt quoted in ``response`` by the original text they came from."""
    original_matches = list(_WORD.finditer(original))
    original_words = [m.group() for m in original_matches]
    compressed_words = [m.group() for m in _WORD.finditer(compressed)]
    response_matches = list(_WORD.finditer(response))

    starts: dict[str, list[int]] = {}  # word -> its positions in the compressed prompt
    for k, word in enumerate(compressed_words):
        starts.setdefault(word, []).append(k)

    pieces: list[str] = []
    cursor = 0
    i = 0
    while i < len(response_matches):
        # Longest run response[i:j] that occurs in the compressed prompt: keep the start positions that still
        # match as the run grows (each step filters the survivors; no rescans of the prompt).
        alive = starts.get(response_matches[i].group(), [])
        j = i + 1 if alive else i
        while alive and j < len(response_matches):
            step, word = j - i, response_matches[j].group()
            alive = [k for k in alive if k + step < len(compressed_words) and compressed_words[k + step] == word]
            if alive:
                j += 1
        if j == i:
            i += 1
            continue
        words = [m.group() for m in response_matches[i:j]]
        cover = _shortest_cover(original_words, words)
        if cover is not None:
            start_char = original_matches[cover[0]].start()
            end_char = original_matches[cover[1] - 1].end()
            pieces.append(response[cursor : response_matches[i].start()])
            pieces.append(original[start_char:end_char])
            cursor = response_matches[j - 1].end()
        i = j
    pieces.append(response[cursor:])
    return "".join(pieces)
