"""cpc, tcra-semantic and tcra-summary on the real embedded models (MiniLM-L6, SmolLM2-135M-Instruct), CPU.

LLMLingua-2 has no offline weights; its mechanics are covered on a tiny random classifier in the unit tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import gold_index, nq_documents, nq_rows

pytestmark = pytest.mark.real_model
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rows():
    return nq_rows(3, gold=9)


def answered(row: dict, text: str) -> bool:
    return any(a.lower() in text.lower() for a in row["answers"])


def test_cpc_meets_budget_keeps_answers_and_ranks_gold_high(real_compressor, rows):
    requests = [
        {"method": "cpc", "documents": nq_documents(r), "question": r["question"], "budget": {"rate": 0.25}}
        for r in rows
    ]
    results = real_compressor.compress_batch(requests)
    for result in results:
        assert 0.95 * result.target_tokens <= result.compressed_tokens <= result.target_tokens
    assert sum(answered(r, res.prompt) for r, res in zip(rows, results, strict=True)) >= 2
    assert sum(gold_index(r) in res.ranking[:5] for r, res in zip(rows, results, strict=True)) >= 2


def test_tcra_semantic_meets_budget_and_protects_numbers(real_compressor, rows):
    docs = nq_documents(rows[0])[:5]  # leave-one-out embeddings cost ~n^2 per sentence: keep it small
    result = real_compressor.compress(
        {"method": "tcra-semantic", "documents": docs, "question": rows[0]["question"], "budget": {"rate": 0.5}}
    )
    assert 0.95 * result.target_tokens <= result.compressed_tokens <= result.target_tokens
    kept = " ".join(d.text for d in result.documents)
    for number in ("1901", "1903"):
        if any(number in d for d in docs):
            assert number in kept


def test_tcra_summary_summarizes_within_budget(real_compressor):
    docs = [
        "Marie Curie was a Polish and naturalised-French physicist and chemist who conducted pioneering "
        "research on radioactivity. She was the first woman to win a Nobel Prize, in 1903.",
        "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
        "after the engineer Gustave Eiffel, whose company built it from 1887 to 1889.",
    ]
    result = real_compressor.compress(
        {
            "method": "tcra-summary",
            "documents": docs,
            "question": "When did Marie Curie win her first Nobel Prize?",
            "budget": {"max_tokens": 45},
            "options": {"max_new_tokens": 16},
        }
    )
    assert result.compressed_tokens <= 45
    assert result.documents, "the generator must produce something"
    assert all(d.text.strip() and d.text not in docs for d in result.documents)  # generated, not copied


def test_cli_runs_cpc_offline(rows, tmp_path):
    request = {
        "method": "cpc",
        "documents": nq_documents(rows[1]),
        "question": rows[1]["question"],
        "budget": {"rate": 0.5},
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "ctxcompress.cli", "compress", "--input", str(path), "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["method"] == "cpc"
    assert 0.95 * result["target_tokens"] <= result["compressed_tokens"] <= result["target_tokens"]


def test_float16_encoder_gives_the_float32_vectors_and_ranking(minilm_dir, rows):
    """The CUDA default (MiniLM in float16) against float32 on the real weights, here on CPU: the same document
    ranking and sentence vectors within float16 rounding; the result stays float32."""
    import numpy as np
    import torch

    from ctxcompress.engines.encoder import SentenceEncoder

    docs = nq_documents(rows[0])
    spans = [[(0, len(d) // 2), (len(d) // 2, len(d))] for d in docs]
    vectors = {}
    for dtype in ("float32", "float16"):
        encoder = SentenceEncoder.from_pretrained(minilm_dir, device="cpu", dtype=dtype)
        assert next(encoder.model.parameters()).dtype == getattr(torch, dtype)
        vectors[dtype] = encoder.span_embeddings([rows[0]["question"], *docs], [[], *spans])
    full, half = vectors["float32"], vectors["float16"]
    assert all(v.pooled.dtype == np.float32 and v.spans.dtype == np.float32 for v in half)
    for a, b in zip(full, half, strict=True):
        assert float(a.pooled @ b.pooled) > 0.999
        assert np.all(np.sum(a.spans * b.spans, axis=1) > 0.999)
    similarity = [np.array([d.pooled @ v[0].pooled for d in v[1:]]) for v in (full, half)]
    assert np.abs(similarity[0] - similarity[1]).max() < 5e-3
    assert np.argsort(-similarity[0])[:5].tolist() == np.argsort(-similarity[1])[:5].tolist()


@pytest.mark.parametrize("method", ["hybrid", "cpc"])
def test_when_nothing_fits_whole_the_best_sentence_is_cut_not_replaced(real_compressor, method):
    """A budget smaller than the best sentence: its first words stay, not a shorter, irrelevant sentence."""
    result = real_compressor.compress(
        {
            "method": method,
            "question": "how long is the nile",
            "documents": [
                "The Nile is about 6,650 km long and flows north through eleven countries into the Mediterranean Sea.",
                "Paris is the capital of France and its largest city, on the Seine.",
            ],
            "budget": {"rate": 0.5},
        }
    )
    assert result.ranking[0] == 0
    kept = " ".join(d.text for d in result.documents)
    assert kept.startswith("The Nile is about") and "Paris" not in kept
    assert result.compressed_tokens <= result.target_tokens
