"""LangChain document transformer: compress documents to a token budget in pipelines without a query."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.documents import BaseDocumentTransformer, Document

from ctxcompress.errors import InvalidInput
from langchain_ctxcompress._backend import CtxCompressSettings, to_documents

__all__ = ["CtxCompressDocumentTransformer"]


class CtxCompressDocumentTransformer(CtxCompressSettings, BaseDocumentTransformer):
    """Compresses documents with ctxcompress where no query is at hand (e.g. ``DocumentCompressorPipeline``).

    The default method is question-free ``llmlingua``; a fixed ``question`` (or ``question=`` at call time)
    enables question-aware methods. Output as in :class:`CtxCompressDocumentCompressor`.

    Example:
        >>> transformer = CtxCompressDocumentTransformer(compressor=Compressor(device="cpu"), max_tokens=500)
        >>> shorter = transformer.transform_documents(docs)
    """

    method: str = "llmlingua"
    """Compression method name; the default needs no question."""
    question: str | None = None
    """Question used for every call unless ``question=`` is passed to the call."""

    def _question(self, kwargs: dict[str, Any]) -> str | None:
        unknown = sorted(set(kwargs) - {"question"})
        if unknown:
            raise InvalidInput(f"unknown argument(s) {', '.join(unknown)}; only 'question' is accepted")
        question = kwargs.get("question", self.question)
        return question if question is None else str(question)

    def transform_documents(self, documents: Sequence[Document], **kwargs: Any) -> Sequence[Document]:
        """Compress ``documents`` to the budget (keyword ``question`` overrides the field)."""
        kept = self.compress_texts([d.page_content for d in documents], self._question(kwargs))
        return to_documents(documents, kept)

    async def atransform_documents(self, documents: Sequence[Document], **kwargs: Any) -> Sequence[Document]:
        """Async :meth:`transform_documents` (a worker thread in-process, the async client remotely)."""
        kept = await self.acompress_texts([d.page_content for d in documents], self._question(kwargs))
        return to_documents(documents, kept)
