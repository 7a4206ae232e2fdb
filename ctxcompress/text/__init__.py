"""Text utilities: target-tokenizer counting, sentence splitting, protected spans."""

from __future__ import annotations

from ctxcompress.text.protect import protected_spans
from ctxcompress.text.sentences import split_sentences, split_sentences_with_spans
from ctxcompress.text.tokens import TargetTokenizer, get_target_tokenizer

__all__ = [
    "TargetTokenizer",
    "get_target_tokenizer",
    "protected_spans",
    "split_sentences",
    "split_sentences_with_spans",
]
