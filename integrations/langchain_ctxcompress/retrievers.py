"""LangChain retriever: retrieve with any retriever, then compress the results to a token budget."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever, RetrieverLike
from pydantic import ConfigDict

from langchain_ctxcompress._backend import CtxCompressSettings, to_documents

__all__ = ["CtxCompressRetriever"]


class CtxCompressRetriever(CtxCompressSettings, BaseRetriever):
    """Retrieves with ``base_retriever``, then compresses what it returned, with the query as the question.

    Equivalent to ``ContextualCompressionRetriever(base_compressor=CtxCompressDocumentCompressor(...),
    base_retriever=...)`` in one object. Output as in :class:`CtxCompressDocumentCompressor`.

    Example:
        >>> retriever = CtxCompressRetriever(base_retriever=store.as_retriever(search_kwargs={"k": 10}),
        ...                                  compressor=Compressor(device="cpu"), max_tokens=600)
        >>> docs = retriever.invoke("who wrote it?")
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    base_retriever: RetrieverLike
    """Retriever (or any runnable from query to documents) whose results are compressed."""

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        documents = self.base_retriever.invoke(query, config={"callbacks": run_manager.get_child()}, **kwargs)
        return to_documents(documents, self.compress_texts([d.page_content for d in documents], query))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        documents = await self.base_retriever.ainvoke(query, config={"callbacks": run_manager.get_child()}, **kwargs)
        return to_documents(documents, await self.acompress_texts([d.page_content for d in documents], query))
