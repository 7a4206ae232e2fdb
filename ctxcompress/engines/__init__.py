"""Model runners. Engines only run batches of tensors; they hold no compression policy."""

from __future__ import annotations

from ctxcompress.engines.device import resolve_device
from ctxcompress.engines.scorer import CausalLMScorer, IterativePrompt

__all__ = ["CausalLMScorer", "IterativePrompt", "resolve_device"]
