"""The one request/result schema shared by the library, CLI, REST service and integrations.

JSON form of a request::

    {"method": "longllmlingua", "documents": ["...", "..."], "question": "...", "instruction": null,
     "budget": {"rate": 0.25} | {"max_tokens": 800}, "options": {...method options...}}

All token counts are in the *target* LLM's tokenizer (default ``cl100k_base``), i.e. what the user pays for.

Text must be valid Unicode: a lone surrogate (JSON ``"\\ud800"`` without its pair) cannot be tokenized or encoded
as UTF-8, so it is refused at validation. Budget numbers must be JSON numbers: a string such as ``"+100"`` (the
reference implementation's ``context_budget``, which it passes to ``eval``) is refused, never parsed or run.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = ["Budget", "CompressionRequest", "CompressionResult", "DocumentSpans", "KeptDocument", "find_lone_surrogate"]

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def find_lone_surrogate(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or dict key) in ``value`` holding a lone surrogate, else ``None``.

    Python strings decoded from JSON ``\\uXXXX`` escapes can hold unpaired UTF-16 surrogates; they are not
    Unicode scalar values, so no tokenizer or UTF-8 encoder accepts them.
    """
    if isinstance(value, str):
        return (path or ".") if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _SURROGATE.search(key):
                return where
            found = find_lone_surrogate(item, where)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = find_lone_surrogate(item, f"{path}.{i}" if path else str(i))
            if found:
                return found
    return None


def _unicode_text(value: str) -> str:
    match = _SURROGATE.search(value)
    if match:
        raise ValueError(
            f"text holds a lone surrogate (U+{ord(match.group()):04X}) at character {match.start()}; send valid Unicode"
        )
    return value


def _unicode_tree(value: dict[str, Any]) -> dict[str, Any]:
    where = find_lone_surrogate(value)
    if where:
        raise ValueError(f"{where!r} holds a lone surrogate (in a name or a value); send valid Unicode")
    return value


Text = Annotated[str, AfterValidator(_unicode_text)]
"""A string that is valid Unicode (no lone surrogates)."""


# Largest token budget accepted: the largest integer a JSON client reads exactly (2^53 - 1). Any budget above the
# input returns it unchanged; a number beyond this one (e.g. 1e40) is a client bug, not a budget.
MAX_BUDGET_TOKENS = 2**53 - 1


class Budget(BaseModel):
    """Target size of the whole compressed prompt (instruction + context + question).

    Exactly one of ``rate`` (fraction of the original prompt's tokens to keep, in (0, 1]) or
    ``max_tokens`` (absolute number of target-tokenizer tokens) is given.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float | None = Field(default=None, gt=0.0, le=1.0, strict=True)
    max_tokens: int | None = Field(default=None, gt=0, le=MAX_BUDGET_TOKENS, strict=True)

    @model_validator(mode="after")
    def _exactly_one(self) -> Budget:
        if (self.rate is None) == (self.max_tokens is None):
            raise ValueError("budget needs exactly one of 'rate' or 'max_tokens'")
        return self

    def target_tokens(self, origin_tokens: int) -> int:
        """The token target for a prompt of ``origin_tokens`` tokens."""
        if self.max_tokens is not None:
            return self.max_tokens
        assert self.rate is not None
        return max(1, round(self.rate * origin_tokens))


class CompressionRequest(BaseModel):
    """One compression job: documents (retrieved chunks) to shrink to ``budget``.

    ``instruction`` and ``question`` are never pruned; they frame the prompt.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Text = "hybrid"
    documents: list[Text]
    question: Text | None = None
    instruction: Text | None = None
    budget: Budget = Field(default_factory=lambda: Budget(rate=0.5))
    options: Annotated[dict[str, Any], AfterValidator(_unicode_tree)] = Field(default_factory=dict)
    include_spans: bool = Field(default=False, strict=True)
    """Also return, per document, the character spans of the original that were kept and dropped."""


class KeptDocument(BaseModel):
    """A document that survived compression, with its index in the request's ``documents``."""

    model_config = ConfigDict(frozen=True)

    index: int
    text: str


class DocumentSpans(BaseModel):
    """Which characters of one request document survived: half-open ``[start, end)`` offsets into the original.

    ``kept`` and ``dropped`` are None when the kept text is not made of pieces of the document (a summary).
    """

    model_config = ConfigDict(frozen=True)

    index: int
    kept: list[tuple[int, int]] | None
    dropped: list[tuple[int, int]] | None
    origin_tokens: int = 0
    """The document's tokens (target tokenizer)."""
    kept_tokens: int = 0
    """Tokens of what was kept of it."""


class CompressionResult(BaseModel):
    """What a compression returns.

    ``documents`` are the kept documents in output order; ``prompt`` is instruction + compressed context +
    question joined as the LLM should receive it. ``ratio`` is origin_tokens / compressed_tokens (4.0 = 4x).
    ``spans`` (when the request set ``include_spans``) locate kept and dropped text in each original document.
    ``dropped_documents`` are the indices of the request's documents that were dropped whole (sorted).
    ``ranking`` is the method's coarse ranking of all document indices, best first, when it ranks.
    """

    model_config = ConfigDict(frozen=True)

    method: str
    documents: list[KeptDocument]
    dropped_documents: list[int] = Field(default_factory=list)
    prompt: str
    origin_tokens: int
    compressed_tokens: int
    ratio: float
    target_tokens: int
    ranking: list[int] | None = None
    spans: list[DocumentSpans] | None = None
    """Per request document (``include_spans``): what was kept and dropped, as character offsets."""
    timings_ms: dict[str, float] = Field(default_factory=dict)
