"""LangChain integration for ctxcompress: compress retrieved documents to a token budget.

* :class:`CtxCompressDocumentCompressor` — a ``BaseDocumentCompressor`` (``ContextualCompressionRetriever``,
  ``DocumentCompressorPipeline``).
* :class:`CtxCompressDocumentTransformer` — a ``BaseDocumentTransformer`` for pipelines without a query.
* :class:`CtxCompressRetriever` — wraps any retriever: retrieve, then compress, in one ``BaseRetriever``.

Each runs in-process (``compressor=ctxcompress.Compressor(...)``) or against a ctxcompress service
(``base_url=...``). Install with ``pip install ctxcompress[langchain]``.
"""

from __future__ import annotations

from langchain_ctxcompress._backend import METADATA_KEY
from langchain_ctxcompress.document_compressors import CtxCompressDocumentCompressor
from langchain_ctxcompress.document_transformers import CtxCompressDocumentTransformer
from langchain_ctxcompress.retrievers import CtxCompressRetriever

__all__ = [
    "CtxCompressDocumentCompressor",
    "CtxCompressDocumentTransformer",
    "CtxCompressRetriever",
    "METADATA_KEY",
]
