"""Shared fixtures: tiny random models for unit tests, the real embedded models for integration tests."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def nq_rows(n: int, gold: int = 9, docs: int = 20) -> list[dict]:
    path = DATA_DIR / "nq_multidoc" / f"{docs}docs" / f"gold_at_{gold}.jsonl.gz"
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


def nq_documents(row: dict) -> list[str]:
    return [f"Document [{i}](Title: {c['title']}) {c['text']}" for i, c in enumerate(row["ctxs"], 1)]


def gold_index(row: dict) -> int:
    return next(i for i, c in enumerate(row["ctxs"]) if c.get("isgold"))


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    from ctxcompress.models import default_registry

    return default_registry().resolve("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_scorer(smollm2_dir: str):
    """A 2-layer randomly initialised Llama with SmolLM2's real tokenizer (fast; mechanics only)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ctxcompress.engines.scorer import CausalLMScorer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    return CausalLMScorer(LlamaForCausalLM(config).eval(), tokenizer, max_batch_tokens=2048)


@pytest.fixture()
def tiny_compressor(tiny_scorer):
    """A Compressor whose default scorer name is served by the tiny model."""
    from ctxcompress import Compressor
    from ctxcompress.pool import ModelPool

    pool = ModelPool(device="cpu")
    pool.register("scorer", "smollm2-135m", tiny_scorer)
    return Compressor(pool=pool)


@pytest.fixture(scope="session")
def real_compressor():
    from ctxcompress import Compressor

    return Compressor(device="cpu")
