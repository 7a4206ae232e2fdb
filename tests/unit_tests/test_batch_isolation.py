"""Every request is its own: a result is identical (fp32, CPU) alone or batched with mates of *any* options.

Property test (Hypothesis) on tiny random models, for every method: draw the subject's options and 1-3 mates'
options independently, then compare the subject's result in the batch with its result alone. Grouping a batch
by model alone (the old ``run_grouped``) fails this: LongLLMLingua read ``restrictive_statement`` and
``rank_doc_tokens`` from the first request, LLMLingua/LongLLMLingua ``min(window)`` and CPC ``min(overlap)``.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxcompress.methods.longllmlingua import RESTRICTIVE_STATEMENT
from tests.conftest import TINY_CLASSIFIER, nq_documents, nq_rows

PROTECT = st.lists(st.sampled_from(["digits", "urls", "code", "json"]), unique=True, max_size=4)
SCORING = {
    "window": st.sampled_from([16, 48, 200]),
    "coarse": st.booleans(),
    "coarse_slack_tokens": st.sampled_from([0, 100]),
    "protect": PROTECT,
}
OPTIONS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "llmlingua": SCORING,
    "longllmlingua": {
        **SCORING,
        "dynamic_ratio": st.sampled_from([0.0, 0.3, 0.8]),
        "reorder": st.sampled_from(["sort", "original"]),
        "contrastive": st.booleans(),
        "restrictive_statement": st.sampled_from([RESTRICTIVE_STATEMENT, ""]),
        "rank_doc_tokens": st.sampled_from([16, 64, 1024]),
    },
    "cpc": {"window_overlap": st.sampled_from([0, 16, 64]), "trim_last_sentence": st.booleans()},
    "tcra-semantic": {
        "max_segment_words": st.sampled_from([4, 20]),
        "protect_question_entities": st.booleans(),
        "protect": PROTECT,
    },
    "tcra-summary": {"max_new_tokens": st.sampled_from([4, 16]), "question_focus": st.booleans()},
    "llmlingua2": {"coarse": st.booleans(), "protect": PROTECT, "coarse_slack_tokens": st.sampled_from([0, 100])},
}
FIXED = {"llmlingua2": {"classifier": TINY_CLASSIFIER}}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return nq_rows(4)


def options(method: str) -> st.SearchStrategy[dict[str, Any]]:
    fields = OPTIONS[method]
    return st.fixed_dictionaries({}, optional=fields).map(lambda drawn: {**drawn, **FIXED.get(method, {})})


def request(row: dict, method: str, opts: dict[str, Any], rate: float) -> dict:
    return {
        "method": method,
        "documents": [d[:400] for d in nq_documents(row)[:6]],
        "question": row["question"],
        "budget": {"rate": rate},
        "options": opts,
    }


@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_result_never_depends_on_batch_mates(tiny_all_compressor, rows, method):
    @settings(max_examples=6)
    @given(
        subject=options(method),
        mates=st.lists(st.tuples(options(method), st.sampled_from([0.2, 0.4])), min_size=1, max_size=3),
        position=st.integers(0, 3),
    )
    def check(subject: dict[str, Any], mates: list[tuple[dict[str, Any], float]], position: int) -> None:
        mine = request(rows[0], method, subject, 0.3)
        batch = [request(rows[1 + i % 3], method, opts, rate) for i, (opts, rate) in enumerate(mates)]
        at = min(position, len(batch))
        batch.insert(at, mine)
        together = tiny_all_compressor.compress_batch(batch)[at]
        alone = tiny_all_compressor.compress(mine)
        assert together.prompt == alone.prompt
        assert together.ranking == alone.ranking
        assert [d.index for d in together.documents] == [d.index for d in alone.documents]

    check()


@pytest.mark.parametrize(("cpu_dtype", "batch_size"), [("float32", 3.0), ("bfloat16", 1.0)])
def test_reduced_precision_on_cpu_runs_each_request_in_its_own_passes(
    tiny_scorer, rows, monkeypatch, cpu_dtype, batch_size
):
    """Shared passes change bf16 results on CPU (kernel blocking follows the pass's shape), so there the Compressor
    gives every request an engine batch of its own; in fp32 requests share one. The dtype is read once, when the
    pool is made (the scorer's weights and the policy agree even if the setting changes later)."""
    import torch

    from ctxcompress import Compressor
    from ctxcompress.pool import ModelPool

    monkeypatch.setenv("CTXCOMPRESS_CPU_DTYPE", cpu_dtype)
    pool = ModelPool(device="cpu")
    monkeypatch.setenv("CTXCOMPRESS_CPU_DTYPE", "float32" if cpu_dtype == "bfloat16" else "bfloat16")
    assert pool.scoring_dtype == getattr(torch, cpu_dtype)
    assert pool.requests_share_passes == (cpu_dtype == "float32")
    pool.register("scorer", "smollm2-135m", tiny_scorer)
    compressor = Compressor(pool=pool)
    batch = [request(rows[i], "longllmlingua", {}, 0.3) for i in range(3)]
    results = compressor.compress_batch(batch)
    assert [r.timings_ms["batch_size"] for r in results] == [batch_size] * 3
    assert [r.prompt for r in results] == [compressor.compress(one).prompt for one in batch]
