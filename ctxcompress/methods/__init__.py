"""Compression methods; importing this package registers every method by name."""

from __future__ import annotations

from ctxcompress.methods import llmlingua, longllmlingua  # noqa: F401  (registration side effect)
from ctxcompress.methods.base import CompressionMethod, method_class, method_names, register_method

__all__ = ["CompressionMethod", "method_class", "method_names", "register_method"]
