"""ctxcompress: shrink retrieved context to a token budget while keeping what answers the question.

Methods (all training-free): ``hybrid`` (the default), ``attention``, ``llmlingua``, ``longllmlingua``, ``cpc``,
``tcra-summary``, ``tcra-semantic``, ``llmlingua2``. Budgets are counted in the target LLM's tokenizer (default
``cl100k_base``).

Example:
    >>> from ctxcompress import compress
    >>> result = compress(documents, question="who wrote it?", rate=0.25)
    >>> result.prompt, result.ratio
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctxcompress.errors import (
    CompressionTimeout,
    CtxCompressError,
    InvalidInput,
    ModelError,
    ModelNotPrepared,
    Overloaded,
    PayloadTooLarge,
    UnknownModel,
)
from ctxcompress.text.recovery import recover
from ctxcompress.types import Budget, CompressionRequest, CompressionResult, DocumentSpans, KeptDocument

if TYPE_CHECKING:
    from ctxcompress.compressor import Compressor
    from ctxcompress.engines.options import EngineOptions

_IN_PROCESS = {"Compressor": "ctxcompress.compressor", "EngineOptions": "ctxcompress.engines.options"}


def __getattr__(name: str) -> Any:
    """``Compressor`` and ``EngineOptions`` load the ML stack (torch, transformers) on first use, so the thin
    fronts (the REST client, the types and errors, the remote adapters) import without it."""
    if name in _IN_PROCESS:
        import importlib

        try:
            module = importlib.import_module(_IN_PROCESS[name])
        except ImportError as exc:  # the base install is the thin front
            raise ImportError(
                f"ctxcompress.{name} runs the models in-process and needs the ML stack ({exc.name} is missing): "
                "pip install 'ctxcompress[ml]'; the REST client (ctxcompress.client) does not"
            ) from exc
        return getattr(module, name)
    raise AttributeError(f"module 'ctxcompress' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Budget",
    "CompressionRequest",
    "CompressionResult",
    "CompressionTimeout",
    "Compressor",
    "CtxCompressError",
    "EngineOptions",
    "InvalidInput",
    "DocumentSpans",
    "KeptDocument",
    "ModelError",
    "ModelNotPrepared",
    "Overloaded",
    "PayloadTooLarge",
    "UnknownModel",
    "compress",
    "recover",
]

_DEFAULT_COMPRESSOR: Compressor | None = None  # noqa: F821 (imported on first use)


def compress(
    documents: list[str],
    question: str | None = None,
    *,
    method: str = "hybrid",
    rate: float | None = None,
    max_tokens: int | None = None,
    instruction: str | None = None,
    options: dict[str, Any] | None = None,
) -> CompressionResult:
    """Compress ``documents`` to ``rate`` (default 0.5) or ``max_tokens`` with a process-wide Compressor."""
    global _DEFAULT_COMPRESSOR
    if _DEFAULT_COMPRESSOR is None:
        from ctxcompress.compressor import Compressor

        _DEFAULT_COMPRESSOR = Compressor()
    budget = {"max_tokens": max_tokens} if max_tokens is not None else {"rate": rate if rate is not None else 0.5}
    return _DEFAULT_COMPRESSOR.compress(
        {
            "method": method,
            "documents": documents,
            "question": question,
            "instruction": instruction,
            "budget": budget,
            "options": options or {},
        }
    )
