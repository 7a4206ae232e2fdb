"""Re-exports the framework-free integration backend (:mod:`ctxcompress.integration`) for this package."""

from __future__ import annotations

from ctxcompress.integration import METADATA_KEY, CompressedText, CtxCompressSettings

__all__ = ["CompressedText", "CtxCompressSettings", "METADATA_KEY"]
