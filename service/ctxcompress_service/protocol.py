"""Wire schemas of the service, in one module.

``POST /v1/compress`` takes and returns :class:`ctxcompress.types.CompressionRequest` /
:class:`~ctxcompress.types.CompressionResult` unchanged; everything else the service speaks is defined here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ctxcompress.chat import ChatCompression
from ctxcompress.types import Budget, CompressionRequest, CompressionResult, find_lone_surrogate

__all__ = [
    "AnthropicMessagesRequest",
    "BatchItem",
    "BatchResponse",
    "ChatCompletionRequest",
    "ChatMessage",
    "CompressionRequest",
    "CompressionResult",
    "ErrorDetail",
    "ErrorResponse",
    "HealthResponse",
    "MethodInfo",
    "MethodsResponse",
    "ModelInfo",
    "ModelsResponse",
    "ProxiedRequest",
    "RecoverRequest",
    "RecoverResponse",
]


def refuse_lone_surrogates(data: Any) -> Any:
    """Lone surrogates can be neither compressed nor forwarded as UTF-8 JSON: refuse them up front."""
    where = find_lone_surrogate(data)
    if where:
        raise ValueError(f"{where!r} holds a lone surrogate; send valid Unicode")
    return data


class RecoverRequest(BaseModel):
    """``POST /v1/recover``: the original prompt, the compressed prompt the LLM saw, and the LLM's response.

    Recovery matches response words inside original words (fragments), a scan of the original per quoted run, so
    the sizes are bounded: a few seconds of CPU at the limits (measured: 300 quoted words against a 340k-character
    original took 1.9 s on a 2-core EPYC).
    """

    model_config = ConfigDict(extra="forbid")

    original: str = Field(max_length=200_000)
    compressed: str = Field(max_length=200_000)
    response: str = Field(max_length=16_000)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        return refuse_lone_surrogates(data)


class RecoverResponse(BaseModel):
    """The response with fragments of the compressed prompt replaced by the original text they came from."""

    response: str


class ErrorDetail(BaseModel):
    type: str
    """The error class, e.g. ``InvalidInput``, ``PayloadTooLarge``, ``Overloaded``."""
    message: str
    field: str | None = None
    """The request field at fault (dotted path), when there is one."""


class ErrorResponse(BaseModel):
    """Every error the service returns has this shape."""

    error: ErrorDetail


class BatchItem(BaseModel):
    """One entry of a batch response: a result or the error of that request (exactly one is set)."""

    result: CompressionResult | None = None
    error: ErrorDetail | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]
    """In request order."""


class MethodInfo(BaseModel):
    name: str
    summary: str
    needs_question: bool
    options: dict[str, Any]
    """JSON schema of the method's options (names, types, defaults, descriptions)."""


class MethodsResponse(BaseModel):
    default_method: str
    default_budget: Budget
    methods: list[MethodInfo]


class ModelInfo(BaseModel):
    name: str
    kind: str
    description: str = ""
    loaded: bool


class ModelsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    devices: list[str] = Field(default_factory=list)
    loaded: list[str] = Field(default_factory=list)


class Savings(BaseModel):
    """Compressions and target-tokenizer tokens of one key and method (or a total) since the service started."""

    compressions: int = 0
    origin_tokens: int = 0
    compressed_tokens: int = 0
    saved_tokens: int = 0
    saved_fraction: float = Field(0.0, description="saved_tokens / origin_tokens (0 before any compression)")


class StatsResponse(BaseModel):
    """``GET /v1/stats``: what compression saved, per API key and method, summed over every worker process."""

    started_at: float = Field(description="Unix time the service started")
    total: Savings
    keys: dict[str, dict[str, Savings]] = Field(
        default_factory=dict,
        description="key name → method → savings ('anonymous' without service keys); a key sees only its own "
        "unless it has sees_all_stats",
    )


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ProxiedRequest(BaseModel):
    """A chat request a compressing proxy forwards; fields other than those below pass through to the upstream."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = Field(default=False, strict=True)  # the published schema says boolean: 0.0 is not false
    ctxcompress: ChatCompression | None = None

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        return refuse_lone_surrogates(data)

    def upstream_body(self, messages: list[ChatMessage]) -> dict[str, Any]:
        """The body to forward: this request with ``messages`` replaced and the ``ctxcompress`` field removed."""
        body = self.model_dump(exclude={"ctxcompress"}, exclude_unset=True)
        body["messages"] = [m.model_dump(exclude_unset=True) for m in messages]
        body["model"] = self.model
        if self.stream:
            body["stream"] = True
        return body


class ChatCompletionRequest(ProxiedRequest):
    """An OpenAI chat-completions request; fields other than those below pass through to the upstream."""


class AnthropicMessagesRequest(ProxiedRequest):
    """An Anthropic Messages API request (``system`` and every other field pass through untouched)."""

    max_tokens: int = Field(gt=0)
