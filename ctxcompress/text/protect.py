"""Protected spans: character ranges that compression must keep verbatim.

Token-pruning methods never drop a token that overlaps a protected span. Detected kinds:
numbers (``digits``), URLs/e-mails (``urls``), fenced and inline code (``code``), JSON keys and structural
characters when a document parses as JSON (``json``), a document's leading source header such as
``Document [3](Title: Nobel Prize)`` or a first line ``Title: …`` (``headers``: a reader must see where a
passage came from), and caller-given literal strings (``force_tokens``).
Pattern matching here only *finds* spans; deciding what to drop is always a model's job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Literal, get_args

__all__ = ["contains_code", "protected_spans", "merge_spans", "PROTECTABLE_KINDS", "ProtectKind"]

ProtectKind = Literal["digits", "urls", "code", "json", "headers"]
PROTECTABLE_KINDS: tuple[ProtectKind, ...] = get_args(ProtectKind)

_NUMBER = re.compile(r"\d+(?:[.,:/\-]\d+)*%?")
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"')\]]+|[\w.+-]+@[\w-]+\.[\w.-]+")
_FENCED_CODE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_JSON_KEY = re.compile(r"\"(?:[^\"\\]|\\.)*\"\s*:")
_JSON_STRUCTURE = re.compile(r"[{}\[\]:,]")
_HEADER = re.compile(
    r"\A\s*(?:Document\s*\[[^\]\n]{1,16}\]\s*)?\(Title:[^\n]{0,300}?\)(?=\s|\Z)|\A\s*Title:[^\n]{0,300}(?=\n)"
)


# A line that reads as source code: a statement keyword at its start, a call or assignment ending the line,
# or a line ending in a block opener/closer. Used to recognise unfenced code (``contains_code``).
_CODE_LINE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import |return\b|print\(|#include|function |const |let |var |public |"
    r"if .*:$|for .*:$|while .*:$|elif .*:$|else:$|try:$|except.*:$)"
    r"|[;{}]\s*$|^\s*[\w.\[\]]+\s*=\s*\S.*$|^\s*\w[\w.]*\(.*\)\s*$"
)


def contains_code(text: str) -> bool:
    """Whether ``text`` holds source code: a fenced block, or at least two lines that read as code, one of
    them an indented line or one ending a statement (``;``, ``{``, ``}``, ``:``) or a call."""
    if _FENCED_CODE.search(text):
        return True
    lines = [line for line in text.splitlines() if line.strip()]
    code = [line for line in lines if _CODE_LINE.search(line)]
    indented = any(line.startswith(("    ", "\t")) for line in code)
    return len(code) >= 2 and (indented or any(line.rstrip().endswith((";", "{", "}", ":", ")")) for line in code))


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping union of half-open spans."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[0] < s[1]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _looks_like_json(text: str) -> bool:
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return False
    try:
        json.loads(stripped)
    except ValueError:
        return False
    return True


def protected_spans(
    text: str,
    *,
    kinds: Iterable[str] = ("digits", "urls", "code", "json"),
    force_tokens: Iterable[str] = (),
) -> list[tuple[int, int]]:
    """Character spans of ``text`` that must survive compression unchanged."""
    wanted = set(kinds)
    spans: list[tuple[int, int]] = []
    if "digits" in wanted:
        spans += [m.span() for m in _NUMBER.finditer(text)]
    if "headers" in wanted:
        spans += [m.span() for m in _HEADER.finditer(text)]
    if "urls" in wanted:
        spans += [m.span() for m in _URL.finditer(text)]
    if "code" in wanted:
        spans += [m.span() for m in _FENCED_CODE.finditer(text)]
        spans += [m.span() for m in _INLINE_CODE.finditer(text)]
    if "json" in wanted and _looks_like_json(text):
        spans += [m.span() for m in _JSON_KEY.finditer(text)]
        spans += [m.span() for m in _JSON_STRUCTURE.finditer(text)]
    for literal in force_tokens:
        if not literal:
            continue
        start = text.find(literal)
        while start >= 0:
            spans.append((start, start + len(literal)))
            start = text.find(literal, start + len(literal))
    return merge_spans(spans)
