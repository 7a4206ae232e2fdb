"""Shared backend of the framework integrations: where compression runs and how texts map to the schema.

Used by ``langchain_ctxcompress`` and ``llama_index.postprocessor.ctxcompress`` (which add only their
framework's document types). Compression runs in-process (a :class:`ctxcompress.Compressor`, given as
``compressor=``) or on a ctxcompress service (``base_url=``, through :mod:`ctxcompress.client`). No compression
logic here: texts go into one :class:`~ctxcompress.CompressionRequest`, one :class:`~ctxcompress.CompressionResult`
comes back, and each kept document is matched to its input by ``index``. Framework-free, so each integration
installs without the other's framework.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from ctxcompress.text.tokens import DEFAULT_TARGET_TOKENIZER, get_target_tokenizer
from ctxcompress.types import Budget, CompressionRequest, CompressionResult

__all__ = ["CompressedText", "CtxCompressSettings", "METADATA_KEY"]

METADATA_KEY = "ctxcompress"
"""Metadata key of the per-document compression record: index, rank, tokens_before, tokens_after, method."""


@dataclass(frozen=True)
class CompressedText:
    """One kept document: its position in the input, its compressed text and its metadata record."""

    index: int
    text: str
    info: dict[str, Any]


def _kept_texts(result: CompressionResult, texts: Sequence[str], target_tokenizer: str) -> list[CompressedText]:
    """Kept documents in the result's order, each with its record (rank: position in the method's ranking,
    or in the output when the method does not rank)."""
    tokenizer = get_target_tokenizer(target_tokenizer)
    rank_of = {index: rank for rank, index in enumerate(result.ranking or [])}
    kept = []
    for position, doc in enumerate(result.documents):
        info = {
            "index": doc.index,
            "rank": rank_of.get(doc.index, position),
            "tokens_before": tokenizer.count(texts[doc.index]),
            "tokens_after": tokenizer.count(doc.text),
            "method": result.method,
        }
        kept.append(CompressedText(index=doc.index, text=doc.text, info=info))
    return kept


def _api_key_from_env() -> SecretStr | None:
    value = os.environ.get("CTXCOMPRESS_API_KEY")
    return SecretStr(value) if value else None


@runtime_checkable
class InProcessCompressor(Protocol):
    """What in-process mode needs: a :class:`ctxcompress.Compressor` (typed structurally, so remote mode never
    imports the ML stack)."""

    def compress(self, request: Any) -> CompressionResult: ...


class CtxCompressSettings(BaseModel):
    """Backend and compression settings.

    Give exactly one of ``compressor`` (in-process) or ``base_url`` (remote service), and at most one of
    ``rate`` or ``max_tokens`` (neither: ``rate=0.5``).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    compressor: InProcessCompressor | None = None
    """In-process :class:`ctxcompress.Compressor` (reuse one: it owns the loaded models)."""
    base_url: str | None = None
    """URL of a ctxcompress service, e.g. ``http://127.0.0.1:8080``; compression then runs there."""
    api_key: SecretStr | None = Field(default_factory=_api_key_from_env)
    """Service API key (remote mode); read from ``CTXCOMPRESS_API_KEY`` when not given."""
    timeout: float = Field(default=60.0, gt=0)
    """Seconds to wait for the service (remote mode)."""
    method: str = "hybrid"
    """Compression method name, e.g. ``hybrid`` (the default), ``longllmlingua`` or ``cpc``."""
    rate: float | None = Field(default=None, gt=0.0, le=1.0)
    """Fraction of the prompt's target-tokenizer tokens to keep (the prompt includes the question)."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Absolute budget for the whole prompt in target-tokenizer tokens."""
    instruction: str | None = None
    """Instruction placed before the documents; never pruned, counted in the budget."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Method options (validated by the method, e.g. ``{"dynamic_ratio": 0.3}``)."""

    _client: Any = PrivateAttr(default=None)
    _client_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="after")
    def _check_backend_and_budget(self) -> CtxCompressSettings:
        if (self.compressor is None) == (self.base_url is None):
            raise ValueError("give exactly one of compressor= (in-process) or base_url= (ctxcompress service)")
        self.budget()  # raises for rate and max_tokens both set
        return self

    def budget(self) -> Budget:
        """The request budget: ``max_tokens`` when set, else ``rate`` (default 0.5)."""
        if self.max_tokens is not None and self.rate is not None:
            raise ValueError("give at most one of rate= or max_tokens=")
        if self.max_tokens is not None:
            return Budget(max_tokens=self.max_tokens)
        return Budget(rate=self.rate if self.rate is not None else 0.5)

    def build_request(self, texts: Sequence[str], question: str | None) -> CompressionRequest:
        """One request holding ``texts`` as its documents, in order."""
        return CompressionRequest(
            method=self.method,
            documents=list(texts),
            question=question,
            instruction=self.instruction,
            budget=self.budget(),
            options=dict(self.options),
        )

    def _target_tokenizer(self) -> str:
        return str(self.options.get("target_tokenizer", DEFAULT_TARGET_TOKENIZER))

    def _api_key(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None

    def _sync_client(self) -> Any:
        with self._client_lock:  # one shared client (thread-safe) even when called from many threads
            if self._client is None:
                from ctxcompress.client import CtxCompressClient

                self._client = CtxCompressClient(self.base_url or "", api_key=self._api_key(), timeout=self.timeout)
            return self._client

    def compress_texts(self, texts: Sequence[str], question: str | None) -> list[CompressedText]:
        """Compress ``texts`` as one request; blank-only input keeps nothing."""
        if not any(t.strip() for t in texts):
            return []
        request = self.build_request(texts, question)
        if self.compressor is not None:
            result = self.compressor.compress(request)
        else:
            result = self._sync_client().compress(request)
        return _kept_texts(result, texts, self._target_tokenizer())

    async def acompress_texts(self, texts: Sequence[str], question: str | None) -> list[CompressedText]:
        """Async :meth:`compress_texts`: the in-process compressor runs in a worker thread, the remote one
        through the async client, so the event loop is never blocked."""
        if not any(t.strip() for t in texts):
            return []
        request = self.build_request(texts, question)
        if self.compressor is not None:
            result = await asyncio.to_thread(self.compressor.compress, request)
        else:
            from ctxcompress.client import AsyncCtxCompressClient

            # One client per call: an httpx AsyncClient is bound to the event loop that opened its connections.
            async with AsyncCtxCompressClient(
                self.base_url or "", api_key=self._api_key(), timeout=self.timeout
            ) as client:
                result = await client.compress(request)
        return _kept_texts(result, texts, self._target_tokenizer())

    def close(self) -> None:
        """Close the remote client, if one was opened (in-process mode has nothing to close)."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None
