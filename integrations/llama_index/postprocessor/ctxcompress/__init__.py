"""LlamaIndex integration for ctxcompress: :class:`CtxCompressNodePostprocessor` compresses retrieved nodes to a
token budget, in-process (``compressor=ctxcompress.Compressor(...)``) or against a ctxcompress service
(``base_url=...``). Install with ``pip install ctxcompress[llamaindex]``.
"""

from __future__ import annotations

from llama_index.postprocessor.ctxcompress._backend import METADATA_KEY
from llama_index.postprocessor.ctxcompress.base import CtxCompressNodePostprocessor

__all__ = ["CtxCompressNodePostprocessor", "METADATA_KEY"]
