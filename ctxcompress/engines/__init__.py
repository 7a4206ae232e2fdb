"""Model runners. Engines only run batches of tensors; they hold no compression policy."""

from __future__ import annotations

from ctxcompress.engines.classifier import TokenClassifier
from ctxcompress.engines.device import resolve_device
from ctxcompress.engines.encoder import SentenceEncoder, TokenEmbeddings
from ctxcompress.engines.generator import Generator
from ctxcompress.engines.scorer import CausalLMScorer, IterativePrompt, IterativeScores, KeepRule

__all__ = [
    "CausalLMScorer",
    "Generator",
    "IterativePrompt",
    "IterativeScores",
    "KeepRule",
    "SentenceEncoder",
    "TokenClassifier",
    "TokenEmbeddings",
    "resolve_device",
]
