"""Generator: batched greedy generation with a seq2seq model or an instruct causal LM.

* Seq2seq (``AutoModelForSeq2SeqLM``, T5/BART family): the prompt is the encoder input.
* Causal LM (``AutoModelForCausalLM``): the prompt becomes a user message rendered with the tokenizer's chat
  template (plain text when it has none); batches are left-padded so every row continues from its last token.

Each item has its own ``max_new_tokens``. Items are sorted by (max_new_tokens, prompt length) and batched by
padded cost (prompt + new tokens), so one batch's members need similar work; each output is cut to its own limit.
"""

from __future__ import annotations

from typing import Any

import torch

from ctxcompress.engines.batching import plan_batches
from ctxcompress.engines.device import default_dtype, resolve_device
from ctxcompress.errors import ModelError

__all__ = ["Generator"]


class Generator:
    """Greedy text generation. Load with :meth:`from_pretrained` or wrap a model and tokenizer.

    Args:
        model: a ``*ForSeq2SeqLM`` or ``*ForCausalLM`` transformers model.
        tokenizer: its tokenizer.
        max_pass_tokens: padded (prompt + generated) tokens per batch.
        max_input_tokens: prompts are truncated (from the left for causal LMs) to this many tokens.
    """

    def __init__(
        self, model: Any, tokenizer: Any, *, max_pass_tokens: int = 8192, max_input_tokens: int = 1024
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.is_seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
        self.device = next(model.parameters()).device
        self.max_pass_tokens = max_pass_tokens
        limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        self.max_input_tokens = min(max_input_tokens, int(limit)) if limit else max_input_tokens
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._eos = tokenizer.eos_token_id

    @classmethod
    def from_pretrained(cls, model_dir: str, *, device: str = "auto", **kwargs: Any) -> Generator:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        torch_device = resolve_device(device)
        try:
            config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
            auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
            tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
            model = auto.from_pretrained(
                model_dir, dtype=default_dtype(torch_device), trust_remote_code=False, use_safetensors=True
            ).to(torch_device)
        except Exception as exc:
            raise ModelError(f"could not load generator from {model_dir}: {exc}") from exc
        return cls(model, tokenizer, **kwargs)

    def count(self, text: str) -> int:
        """Tokens of ``text`` in this model's tokenizer (no special tokens)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(self, prompt: str) -> list[int]:
        """Input ids for ``prompt``: chat template for instruct causal LMs, plain encoding otherwise."""
        if not self.is_seq2seq and getattr(self.tokenizer, "chat_template", None):
            rendered = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
            )
            ids = self.tokenizer(rendered, add_special_tokens=False)["input_ids"]
        else:
            ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        if len(ids) > self.max_input_tokens:  # keep the end: the instruction/generation prompt sits there
            ids = ids[-self.max_input_tokens :] if not self.is_seq2seq else ids[: self.max_input_tokens]
        return list(ids)

    @torch.inference_mode()
    def generate(self, prompts: list[str], max_new_tokens: list[int]) -> list[str]:
        """Greedy continuation of each prompt, at most ``max_new_tokens[i]`` tokens, special tokens removed."""
        if len(prompts) != len(max_new_tokens):
            raise ValueError("prompts and max_new_tokens differ in length")
        outputs = [""] * len(prompts)
        encoded = [self.render(p) for p in prompts]
        todo = [i for i, n in enumerate(max_new_tokens) if n > 0]
        # Sort key folds the generation length in, so a batch's rows need similar numbers of steps.
        costs = [len(encoded[i]) + 4 * max_new_tokens[i] for i in todo]
        for batch in plan_batches(costs, max_padded_tokens=self.max_pass_tokens):
            members = [todo[b] for b in batch]
            texts = self._generate_batch([encoded[i] for i in members], [max_new_tokens[i] for i in members])
            for i, text in zip(members, texts, strict=True):
                outputs[i] = text
        return outputs

    def _generate_batch(self, rows: list[list[int]], limits: list[int]) -> list[str]:
        longest = max(len(r) for r in rows)
        pad = int(self.tokenizer.pad_token_id)
        input_ids = torch.full((len(rows), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            if self.is_seq2seq:  # encoder inputs: right padding
                input_ids[i, : len(r)] = torch.tensor(r)
                mask[i, : len(r)] = 1
            else:  # decoder-only: left padding so generation continues each row's last real token
                input_ids[i, longest - len(r) :] = torch.tensor(r)
                mask[i, longest - len(r) :] = 1
        generated = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            max_new_tokens=max(limits),
            do_sample=False,
            num_beams=1,
            pad_token_id=pad,
            eos_token_id=self._eos,
        )
        new = generated if self.is_seq2seq else generated[:, longest:]
        texts = []
        for row, limit in zip(new.tolist(), limits, strict=True):
            ids = [t for t in row if t != pad or t == self._eos]
            if self.is_seq2seq and ids and ids[0] == getattr(self.model.config, "decoder_start_token_id", None):
                ids = ids[1:]
            if self._eos in ids:
                ids = ids[: ids.index(self._eos)]
            texts.append(self.tokenizer.decode(ids[:limit], skip_special_tokens=True).strip())
        return texts
