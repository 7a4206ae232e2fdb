"""Eval harness with real models: the MiniLM baseline, and the llmlingua anchor when .venv-anchor exists."""

from __future__ import annotations

import pytest
from ctxcompress_eval.anchor import AnchorRunner, default_venv
from ctxcompress_eval.baselines import make_baseline
from ctxcompress_eval.datasets import Example, load_nq

from tests.conftest import DATA_DIR

pytestmark = pytest.mark.real_model


def test_minilm_ranks_gold_document_high_and_keeps_the_answer():
    examples = load_nq(DATA_DIR, docs=20, positions=[9], limit=3)
    outputs = make_baseline("minilm").run(examples, 0.25)
    assert all(o.error is None and o.compressed_tokens <= o.target_tokens for o in outputs)
    assert sum(o.ranking.index(9) < 3 for o in outputs) >= 2


@pytest.mark.skipif(not (default_venv() / ".anchor-pins").is_file(), reason=".venv-anchor not set up")
def test_anchor_runs_unmodified_and_its_text_is_attributed(smollm2_dir):
    (row,) = load_nq(DATA_DIR, docs=20, positions=[0], limit=1)
    short = Example(
        id="a0",
        dataset="nq20",
        documents=row.documents[:3],
        question=row.question,
        instruction=row.instruction,
        answers=row.answers,
        gold_index=0,
        position=0,
    )
    (out,) = AnchorRunner("anchor-llmlingua", "llmlingua", smollm2_dir, device="cpu").run([short], 0.5)
    assert out.error is None, out.error
    assert 0 < out.compressed_tokens < out.origin_tokens
    assert out.kept_source == "markers+overlap"
    assert {i for i, _ in out.kept} <= {-1, 0, 1, 2} and any(i >= 0 for i, _ in out.kept)
