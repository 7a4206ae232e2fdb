"""TokenClassifier: per-word keep probabilities from a token-classification encoder (LLMLingua-2 style).

Each input is a list of words. Words are tokenized together (``is_split_into_words``), the model gives a
softmax over labels per word piece, and a word's keep probability is the mean of its pieces' probabilities of
the keep label. Inputs are batched longest-first by padded cost; inputs longer than the model's window are
truncated (callers chunk under :attr:`max_length`), and words that lost all their pieces get NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ctxcompress.engines.batching import plan_batches
from ctxcompress.engines.device import default_dtype, resolve_device
from ctxcompress.errors import ModelError

__all__ = ["TokenClassifier"]


class TokenClassifier:
    """Runs an ``AutoModelForTokenClassification`` with a fast tokenizer.

    Args:
        model: the token-classification model.
        tokenizer: its fast tokenizer (word ids are needed to merge pieces into words).
        keep_label: index of the "keep" label (1 for the LLMLingua-2 checkpoints).
        max_pass_tokens: padded word pieces per forward pass.
    """

    def __init__(self, model: Any, tokenizer: Any, *, keep_label: int = 1, max_pass_tokens: int = 8192) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError("TokenClassifier needs a fast tokenizer (word ids)")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.keep_label = keep_label
        self.max_pass_tokens = max_pass_tokens
        self.device = next(model.parameters()).device
        positions = int(getattr(model.config, "max_position_embeddings", 512) or 512)
        if getattr(model.config, "model_type", "") in ("xlm-roberta", "roberta", "camembert"):
            positions -= 2  # RoBERTa reserves positions for the padding offset
        model_max = int(getattr(tokenizer, "model_max_length", positions) or positions)
        self.max_length = min(positions, model_max, 512)
        self.num_special = len(tokenizer("", add_special_tokens=True)["input_ids"])

    @classmethod
    def from_pretrained(cls, model_dir: str, *, device: str = "auto", **kwargs: Any) -> TokenClassifier:
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        torch_device = resolve_device(device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
            model = AutoModelForTokenClassification.from_pretrained(
                model_dir, dtype=default_dtype(torch_device), trust_remote_code=False, use_safetensors=True
            ).to(torch_device)
        except Exception as exc:
            raise ModelError(f"could not load token classifier from {model_dir}: {exc}") from exc
        return cls(model, tokenizer, **kwargs)

    def word_pieces(self, words: list[str]) -> list[int]:
        """Number of word pieces of each word (as tokenized in context of the list)."""
        if not words:
            return []
        enc = self.tokenizer(words, is_split_into_words=True, add_special_tokens=False)
        counts = [0] * len(words)
        for w in enc.word_ids():
            if w is not None:
                counts[w] += 1
        return counts

    @torch.inference_mode()
    def keep_probabilities(self, inputs: list[list[str]]) -> list[np.ndarray]:
        """For each list of words, each word's probability of the keep label (float32; NaN if truncated away)."""
        encodings = [
            self.tokenizer(words, is_split_into_words=True, truncation=True, max_length=self.max_length)
            if words
            else None
            for words in inputs
        ]
        results = [np.full(len(words), np.nan, dtype=np.float32) for words in inputs]
        todo = [i for i, e in enumerate(encodings) if e is not None]
        lengths = [len(encodings[i]["input_ids"]) for i in todo]  # type: ignore[index]
        pad = int(self.tokenizer.pad_token_id or 0)
        for batch in plan_batches(lengths, max_padded_tokens=self.max_pass_tokens):
            members = [todo[b] for b in batch]
            longest = max(lengths[b] for b in batch)
            input_ids = torch.full((len(members), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(members), longest), dtype=torch.long)
            for row, i in enumerate(members):
                ids = encodings[i]["input_ids"]  # type: ignore[index]
                input_ids[row, : len(ids)] = torch.tensor(ids)
                mask[row, : len(ids)] = 1
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)).logits
            probs = torch.softmax(logits.float(), dim=-1)[..., self.keep_label].cpu().numpy()
            for row, i in enumerate(members):
                word_ids = encodings[i].word_ids()  # type: ignore[union-attr]
                sums = np.zeros(len(inputs[i]), dtype=np.float64)
                counts = np.zeros(len(inputs[i]), dtype=np.float64)
                for position, w in enumerate(word_ids):
                    if w is not None:
                        sums[w] += probs[row, position]
                        counts[w] += 1
                seen = counts > 0
                results[i][seen] = (sums[seen] / counts[seen]).astype(np.float32)
        return results
