"""LangChain document compressor: compress retrieved documents against the query to a token budget."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document

from langchain_ctxcompress._backend import CtxCompressSettings, to_documents

__all__ = ["CtxCompressDocumentCompressor"]


class CtxCompressDocumentCompressor(CtxCompressSettings, BaseDocumentCompressor):
    """Compresses retrieved documents with ctxcompress, using the query as the question.

    All documents go into one request (one document each, never joined), so the method ranks them against
    each other. Output: the kept documents in the result's order, each with its own metadata plus a
    ``ctxcompress`` record (``index``, ``rank``, ``tokens_before``, ``tokens_after``, ``method``); documents
    dropped entirely are not returned. Works in ``ContextualCompressionRetriever`` and
    ``DocumentCompressorPipeline``.

    Example:
        >>> from ctxcompress import Compressor
        >>> compressor = CtxCompressDocumentCompressor(compressor=Compressor(device="cpu"), rate=0.3)
        >>> compressed = compressor.compress_documents(docs, "who wrote it?")
        >>> remote = CtxCompressDocumentCompressor(base_url="http://127.0.0.1:8080", max_tokens=800)
    """

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Compress ``documents`` to the budget with ``query`` as the question."""
        kept = self.compress_texts([d.page_content for d in documents], query)
        return to_documents(documents, kept)

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents` (a worker thread in-process, the async client remotely)."""
        kept = await self.acompress_texts([d.page_content for d in documents], query)
        return to_documents(documents, kept)
