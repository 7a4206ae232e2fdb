"""Model folders with the real configs and tokenizers and randomly initialised weights, for timing runs on
machines that lack the weights (the lent GPU): speed does not depend on weight values."""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["build_random_models"]


def build_random_models(kit: Path, where: Path) -> dict[str, dict[str, str]]:
    """Random SmolLM2-135M and all-MiniLM-L6-v2 folders under ``where`` from ``kit``'s ``smollm2-135m/`` and
    ``minilm-l6/`` (config + tokenizer files); returns the ``$CTXCOMPRESS_MODELS`` entries naming them. Built once:
    an existing ``model.safetensors`` is kept, so every process that reads the folders sees the same weights."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    torch.manual_seed(0)
    lm, enc = where / "smollm2-135m", where / "minilm-l6"
    if not (lm / "model.safetensors").exists():
        shutil.copytree(kit / "smollm2-135m", lm, dirs_exist_ok=True)
        AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(lm)).save_pretrained(lm)
    if not (enc / "model.safetensors").exists():
        shutil.copytree(kit / "minilm-l6", enc, dirs_exist_ok=True)
        AutoModel.from_config(AutoConfig.from_pretrained(enc)).save_pretrained(enc)
    return {
        "smollm2-135m": {"kind": "causal-lm", "path": str(lm)},
        "minilm-l6": {"kind": "sentence-encoder", "path": str(enc)},
    }
