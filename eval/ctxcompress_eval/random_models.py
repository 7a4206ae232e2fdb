"""Model folders with the real configs and tokenizers and randomly initialised weights, for timing runs on
machines that lack the weights (the lent GPU): speed does not depend on weight values."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

__all__ = ["build_random_models", "use_random_models"]


def build_random_models(kit: Path, where: Path, layers: int | None = None) -> dict[str, dict[str, str]]:
    """Random SmolLM2-135M and all-MiniLM-L6-v2 folders under ``where`` from ``kit``'s ``smollm2-135m/`` and
    ``minilm-l6/`` (config + tokenizer files); returns the ``$CTXCOMPRESS_MODELS`` entries naming them. Built once:
    an existing ``model.safetensors`` is kept, so every process that reads the folders sees the same weights.
    ``layers``: that many layers per model (widths and tokenizers kept: the host's work at a fraction of the
    passes' cost, for timing host steps on a CPU)."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    torch.manual_seed(0)
    lm, enc = where / "smollm2-135m", where / "minilm-l6"
    if not (lm / "model.safetensors").exists():
        shutil.copytree(kit / "smollm2-135m", lm, dirs_exist_ok=True)
        AutoModelForCausalLM.from_config(_config(lm, layers)).save_pretrained(lm)
    if not (enc / "model.safetensors").exists():
        shutil.copytree(kit / "minilm-l6", enc, dirs_exist_ok=True)
        AutoModel.from_config(_config(enc, layers)).save_pretrained(enc)
    return {
        "smollm2-135m": {"kind": "causal-lm", "path": str(lm)},
        "minilm-l6": {"kind": "sentence-encoder", "path": str(enc)},
    }


def use_random_models(kit: Path, layers: int | None = None) -> None:
    """Build (once) the random folders under ``/tmp/ctxc-random`` (``-l<layers>`` with ``layers``) and export them
    in ``$CTXCOMPRESS_MODELS`` for this process and its children: what the device scripts run on."""
    where = Path("/tmp/ctxc-random" if layers is None else f"/tmp/ctxc-random-l{layers}")
    os.environ["CTXCOMPRESS_MODELS"] = json.dumps(build_random_models(kit, where, layers))


def _config(folder: Path, layers: int | None):  # noqa: ANN202
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    if layers is not None:
        config.num_hidden_layers = layers
    return config
