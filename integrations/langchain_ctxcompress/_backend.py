"""LangChain side of the integration backend: :mod:`ctxcompress.integration` plus Document mapping."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.documents import Document

from ctxcompress.integration import METADATA_KEY, CompressedText, CtxCompressSettings

__all__ = ["CompressedText", "CtxCompressSettings", "METADATA_KEY", "to_documents"]


def to_documents(documents: Sequence[Document], kept: Sequence[CompressedText]) -> list[Document]:
    """One output Document per kept text: its input's id and metadata plus the ``ctxcompress`` record."""
    return [
        Document(
            page_content=k.text,
            metadata={**documents[k.index].metadata, METADATA_KEY: k.info},
            id=documents[k.index].id,
        )
        for k in kept
    ]
