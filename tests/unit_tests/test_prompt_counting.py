"""The prompt's target-token count as the sum of its pieces' counts (cl100k_base) equals the whole prompt's count."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from ctxcompress.prompting import SEPARATOR, PreparedRequest, assemble_prompt, prepare, prompt_segments
from ctxcompress.text.tokens import get_target_tokenizer
from ctxcompress.types import CompressionRequest

# What tends to sit at a part's edges: punctuation that absorbs line breaks, contractions, digits, every kind of
# space the tokenizer's \s and Python's isspace disagree on, CJK, emoji, combining marks, line-break variants.
ATOMS = list("ab Z09.,;:'\"!?-_()[]{}\n\r\t") + [
    "'s", "'ll", "'S", "\u00a0", "\u3000", "\u2028", "\x85", "\x0b", "\x0c", "\x1c", "\x1f", "\u200b", "\ufeff",
    "\u180e", "东京", "🙂", "\u0301", "é", "123456", "...", "\n\n", "  \n", "\r\n",
]  # fmt: skip
texts = st.lists(st.sampled_from(ATOMS), max_size=10).map("".join)
COUNT = get_target_tokenizer("cl100k_base")


def _old_assemble(instruction: str | None, documents: list[str], question: str | None) -> str:
    """The prompt rule as it was written before the pieces (the reference)."""
    parts = [instruction or "", SEPARATOR.join(d.strip() for d in documents if d.strip()), question or ""]
    return SEPARATOR.join(p for p in parts if p.strip())


@settings(max_examples=600, deadline=None)
@given(st.none() | texts, st.lists(texts, max_size=4), st.none() | texts)
def test_the_pieces_make_the_prompt_and_their_counts_add_up(instruction, documents, question) -> None:
    pieces = prompt_segments(instruction, documents, question)
    prompt = assemble_prompt(instruction, documents, question)
    assert "".join(pieces) == prompt == _old_assemble(instruction, documents, question)
    assert sum(COUNT.count(piece) for piece in pieces) == COUNT.count(prompt)


class NoOptions(BaseModel):
    pass


def _prepared(documents: list[str], **fields: object) -> PreparedRequest:
    request = CompressionRequest(documents=documents, budget={"max_tokens": 100_000}, method="hybrid", **fields)
    return prepare(request, NoOptions)


@settings(max_examples=200, deadline=None)
@given(st.lists(texts.filter(str.strip), min_size=1, max_size=4), st.lists(texts, min_size=1, max_size=4))
def test_count_prompt_counts_what_the_whole_prompt_counts(documents, candidates) -> None:
    prepared = _prepared(documents, instruction="Answer.\n", question=" Who?")
    assert prepared.origin_tokens == COUNT.count(prepared.origin_prompt)
    for kept in (candidates, documents, [""] * len(documents)):
        assert prepared.count_prompt(kept) == COUNT.count(prepared.prompt_for(kept))


@pytest.mark.parametrize("chunk_cache_mb", [256, 0])
def test_the_compressor_counts_a_recurring_chunk_once(chunk_cache_mb: int, monkeypatch) -> None:  # noqa: ANN001
    """A document sent again (with another question) is not tokenized again in `prepare`; with the chunk caches
    off, every request counts its own. The counts are the same either way."""
    from ctxcompress import Compressor
    from ctxcompress.engines.options import EngineOptions
    from ctxcompress.text.tokens import TargetTokenizer

    compressor = Compressor(device="cpu", engine_options=EngineOptions(chunk_cache_mb=chunk_cache_mb))
    documents = ["The Nile flows north into the Mediterranean.", "Paris is the capital of France."]
    counted: list[str] = []
    count = TargetTokenizer.count
    monkeypatch.setattr(TargetTokenizer, "count", lambda self, text: counted.append(text) or count(self, text))
    first = compressor.prepare({"documents": documents, "question": "Where does the Nile flow?", "method": "hybrid"})
    counted.clear()
    again = compressor.prepare({"documents": documents, "question": "What is the capital?", "method": "hybrid"})
    pieces = [d + SEPARATOR for d in documents]
    assert any(p in counted for p in pieces) == (chunk_cache_mb == 0)
    assert "What is the capital?" in counted  # the new question's piece
    assert again.origin_tokens == COUNT.count(again.origin_prompt)
    assert first.origin_tokens == COUNT.count(first.origin_prompt)
