"""LlamaIndex node postprocessor: compress retrieved nodes against the query to a token budget."""

from __future__ import annotations

from collections.abc import Sequence

from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from llama_index.postprocessor.ctxcompress._backend import METADATA_KEY, CompressedText, CtxCompressSettings

__all__ = ["CtxCompressNodePostprocessor"]


def _to_nodes(nodes: Sequence[NodeWithScore], kept: Sequence[CompressedText]) -> list[NodeWithScore]:
    """One output node per kept text: a copy of its input node (id, metadata, relationships, score) with the
    compressed text and a ``ctxcompress`` metadata record hidden from the LLM and embedding views."""
    out = []
    for k in kept:
        source = nodes[k.index]
        node = source.node.model_copy(deep=True)
        node.set_content(k.text)
        node.metadata = {**node.metadata, METADATA_KEY: k.info}
        for excluded in (node.excluded_llm_metadata_keys, node.excluded_embed_metadata_keys):
            if METADATA_KEY not in excluded:
                excluded.append(METADATA_KEY)
        out.append(NodeWithScore(node=node, score=source.score))
    return out


class CtxCompressNodePostprocessor(CtxCompressSettings, BaseNodePostprocessor):
    """Compresses retrieved nodes with ctxcompress, using the query as the question.

    Each node is one document of one request (nodes are never joined), so the method ranks them against each
    other. Output: the kept nodes in the result's order, each keeping its id, metadata and retrieval score,
    with compressed text and a ``ctxcompress`` record (``index``, ``rank``, ``tokens_before``,
    ``tokens_after``, ``method``); nodes dropped entirely are not returned. Node text is compressed without
    its metadata (``MetadataMode.NONE``).

    Example:
        >>> from ctxcompress import Compressor
        >>> post = CtxCompressNodePostprocessor(compressor=Compressor(device="cpu"), max_tokens=600)
        >>> nodes = post.postprocess_nodes(index.as_retriever(similarity_top_k=10).retrieve(q), query_str=q)
        >>> remote = CtxCompressNodePostprocessor(base_url="http://127.0.0.1:8080", rate=0.3)
    """

    @classmethod
    def class_name(cls) -> str:
        return "CtxCompressNodePostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        texts = [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        question = query_bundle.query_str if query_bundle is not None else None
        return _to_nodes(nodes, self.compress_texts(texts, question))

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        texts = [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        question = query_bundle.query_str if query_bundle is not None else None
        return _to_nodes(nodes, await self.acompress_texts(texts, question))
