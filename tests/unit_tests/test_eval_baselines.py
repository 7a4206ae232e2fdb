"""Eval baselines: budget, order, ranking and determinism on real NQ rows (no model needed)."""

from __future__ import annotations

from ctxcompress_eval.baselines import make_baseline
from ctxcompress_eval.datasets import Example, load_nq

from tests.conftest import DATA_DIR


def _examples():
    return load_nq(DATA_DIR, docs=20, positions=[0, 19], limit=1)


def test_truncate_keeps_the_head_within_budget():
    for out, ex in zip(make_baseline("truncate").run(_examples(), 0.25), _examples(), strict=True):
        assert out.compressed_tokens <= out.target_tokens
        assert out.compressed_tokens >= 0.95 * out.target_tokens  # filled, not just under
        indices = [i for i, _ in out.kept]
        assert indices == list(range(len(indices)))
        assert all(text == ex.documents[i] for i, text in out.kept[:-1])
        assert ex.documents[indices[-1]].startswith(out.kept[-1][1])


def test_random_is_seeded_and_within_budget():
    examples = _examples()
    first = make_baseline("random", seed=0).run(examples, 0.5)
    again = make_baseline("random", seed=0).run(examples, 0.5)
    other = make_baseline("random", seed=1).run(examples, 0.5)
    assert [o.context for o in first] == [o.context for o in again]
    assert [o.context for o in first] != [o.context for o in other]
    assert all(o.compressed_tokens <= o.target_tokens for o in first)


def test_bm25_ranks_the_document_that_matches_the_query_first():
    docs = [
        "Document [1] Cats sleep a lot.",
        "Document [2] The Eiffel Tower is in Paris, France.",
        "Document [3] Dogs bark at night. " * 3,
    ]
    ex = Example(
        id="t",
        dataset="t",
        documents=docs,
        question="Question: where is the eiffel tower?\nAnswer:",
        instruction=None,
        answers=["Paris"],
        gold_index=1,
        meta={"question": "where is the eiffel tower"},
    )
    (out,) = make_baseline("bm25").run([ex], 0.5)
    assert out.ranking[0] == 1
    assert out.kept[0][0] == 1 and "Paris" in out.context
    assert out.compressed_tokens <= out.target_tokens


def test_none_is_the_uncompressed_prompt_at_rate_one():
    (out,) = make_baseline("none").run(_examples()[:1], 0.25)
    assert out.rate == 1.0 and out.compressed_tokens == out.origin_tokens
    assert len(out.kept) == 20


def test_budget_smaller_than_the_question_is_an_error_not_a_crash():
    ex = _examples()[0]
    (out,) = make_baseline("bm25").run([ex], 0.001)
    assert out.error and "budget" in out.error
