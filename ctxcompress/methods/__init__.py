"""Compression methods; importing this package registers every method by name."""

from __future__ import annotations

from ctxcompress.methods import (  # noqa: F401  (registration side effect)
    attention,
    cpc,
    hybrid,
    llmlingua,
    llmlingua2,
    longllmlingua,
    tcra_semantic,
    tcra_summary,
)
from ctxcompress.methods.base import CompressionMethod, method_class, method_names, register_method

__all__ = ["CompressionMethod", "method_class", "method_names", "register_method"]
