"""The one request/result schema shared by the library, CLI, REST service and integrations.

JSON form of a request::

    {"method": "longllmlingua", "documents": ["...", "..."], "question": "...", "instruction": null,
     "budget": {"rate": 0.25} | {"max_tokens": 800}, "options": {...method options...}}

All token counts are in the *target* LLM's tokenizer (default ``cl100k_base``), i.e. what the user pays for.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Budget", "CompressionRequest", "KeptDocument", "CompressionResult"]


class Budget(BaseModel):
    """Target size of the whole compressed prompt (instruction + context + question).

    Exactly one of ``rate`` (fraction of the original prompt's tokens to keep, in (0, 1]) or
    ``max_tokens`` (absolute number of target-tokenizer tokens) is given.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, gt=0)

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

    method: str = "longllmlingua"
    documents: list[str]
    question: str | None = None
    instruction: str | None = None
    budget: Budget = Field(default_factory=lambda: Budget(rate=0.5))
    options: dict[str, Any] = Field(default_factory=dict)


class KeptDocument(BaseModel):
    """A document that survived compression, with its index in the request's ``documents``."""

    model_config = ConfigDict(frozen=True)

    index: int
    text: str


class CompressionResult(BaseModel):
    """What a compression returns.

    ``documents`` are the kept documents in output order; ``prompt`` is instruction + compressed context +
    question joined as the LLM should receive it. ``ratio`` is origin_tokens / compressed_tokens (4.0 = 4x).
    ``ranking`` is the method's coarse ranking of all document indices, best first, when it ranks.
    """

    model_config = ConfigDict(frozen=True)

    method: str
    documents: list[KeptDocument]
    prompt: str
    origin_tokens: int
    compressed_tokens: int
    ratio: float
    target_tokens: int
    ranking: list[int] | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
