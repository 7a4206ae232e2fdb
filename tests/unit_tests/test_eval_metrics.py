"""Eval metrics and the anchor's text-to-document attribution on hand-made cases."""

from __future__ import annotations

import pytest
from ctxcompress_eval.anchor import attribute_documents, split_prompt
from ctxcompress_eval.metrics import aggregate, contains_answer, normalize, prompt_metrics, short_answers


def test_answer_matching_normalises_case_and_whitespace_only():
    assert normalize("  Wilhelm\n Conrad   RÖNTGEN ") == "wilhelm conrad röntgen"
    assert contains_answer("... to Wilhelm  Conrad\nRöntgen, of Germany", ["wilhelm conrad röntgen"])
    assert not contains_answer("to Wilhelm-Conrad Röntgen", ["Wilhelm Conrad Röntgen"])  # punctuation matters
    assert not contains_answer("Röntgen", ["Wilhelm Conrad Röntgen"])
    assert contains_answer("x", ["", "y", "X"])
    assert not contains_answer("anything", ["", "  "])
    assert not contains_answer(None, ["a"])


def test_short_answers_keep_at_most_five_words():
    assert short_answers(["Bob Dylan", "one two three four five six", "a b c d e"]) == ["Bob Dylan", "a b c d e"]
    assert short_answers(["教育", "体验服是逆战拿来测试新模式的。"]) == ["教育"]


def test_prompt_metrics_rank_budget_and_gold_document():
    m = prompt_metrics(
        context="Doc A says Paris. Doc B.",
        gold_text="Doc B.",
        answers=["paris"],
        gold_index=1,
        ranking=[2, 0, 1],
        origin_tokens=400,
        compressed_tokens=105,
        target_tokens=100,
    )
    assert m["answer_retained"] is True
    assert m["gold_answer_retained"] is False  # the answer survived, but not in the gold document
    assert m["gold_rank"] == 2
    assert m["budget_error"] == pytest.approx(0.05)
    assert m["ratio"] == pytest.approx(400 / 105)
    dropped = prompt_metrics(
        context="",
        gold_text=None,
        answers=["x"],
        gold_index=5,
        ranking=[0, 1],
        origin_tokens=10,
        compressed_tokens=5,
        target_tokens=5,
    )
    assert dropped["gold_rank"] == 2 and dropped["gold_answer_retained"] is False
    unranked = prompt_metrics(
        context="a",
        gold_text=None,
        answers=[],
        gold_index=None,
        ranking=None,
        origin_tokens=10,
        compressed_tokens=5,
        target_tokens=5,
    )
    assert unranked["gold_rank"] is None and unranked["answer_retained"] is None


def _row(rank, err, ret, latency, origin=1000, error=None):
    return {
        "gold_rank": rank,
        "budget_error": err,
        "answer_retained": ret,
        "gold_answer_retained": ret,
        "ratio": 4.0,
        "origin_tokens": origin,
        "compressed_tokens": 250,
        "latency_ms": latency,
        "error": error,
    }


def test_aggregate_recall_worst_error_latency_and_errors():
    rows = [
        _row(0, 0.01, True, 100),
        _row(2, -0.04, False, 200),
        _row(5, 0.02, True, 300),
        _row(0, 9.0, True, 1, error="boom"),
    ]
    agg = aggregate(rows)
    assert agg["n"] == 4 and agg["n_errors"] == 1
    assert agg["recall_at_1"] == pytest.approx(1 / 3, abs=1e-4)
    assert agg["recall_at_3"] == pytest.approx(2 / 3, abs=1e-4)
    assert agg["budget_error_worst"] == -0.04  # largest magnitude, sign kept; the failed row is ignored
    assert agg["budget_error_median"] == 0.01
    assert agg["answer_retention"] == pytest.approx(2 / 3, abs=1e-4)
    assert agg["latency_ms_p50"] == 200
    assert agg["latency_ms_p90"] == pytest.approx(280)
    assert agg["tokens_per_s"] == pytest.approx(3000 / 0.6, rel=1e-3)
    assert aggregate([])["answer_retention"] is None


DOCS = [
    "Document [1](Title: Paris) Paris is the capital of France and its largest city.",
    "Document [2](Title: Berlin) Berlin is the capital of Germany, on the river Spree.",
    "Document [3](Title: Rome) Rome is the capital of Italy, founded on seven hills.",
]


def test_attribution_uses_markers_then_word_overlap():
    context = (
        "Document [3](Title: Rome) Rome capital Italy seven hills\n\nDocument [1] Paris capital France"
        "\n\nBerlin Germany river Spree\n\nzebra quantum xylophone"
    )
    pieces = attribute_documents(context, DOCS)
    assert [i for i, _ in pieces] == [2, 0, 1, -1]
    assert pieces[0][1].startswith("Document [3]")
    # A marker whose text belongs to another document is not trusted; overlap decides.
    ((index, _),) = attribute_documents("Document [2] Rome Italy seven hills", DOCS)
    assert index == 2


def test_split_prompt_strips_instruction_and_question():
    prompt = "Answer it.\n\nDoc one.\n\nDoc two.\n\nQuestion: who?\nAnswer:"
    assert split_prompt(prompt, "Answer it.", "Question: who?\nAnswer:") == "Doc one.\n\nDoc two."
    assert split_prompt("pruned instr\n\nDoc.", "Answer it.", None) == "pruned instr\n\nDoc."
