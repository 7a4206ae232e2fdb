"""Dataset loaders of the eval harness, on the real files in ../shared/data (small limits)."""

from __future__ import annotations

import re

import pytest
from ctxcompress_eval.datasets import (
    load_datasets,
    load_gsm8k,
    load_longbench,
    load_nq,
    split_longbench_context,
)

from ctxcompress.errors import InvalidInput
from tests.conftest import DATA_DIR


def test_nq20_gold_document_sits_at_the_requested_position():
    examples = load_nq(DATA_DIR, docs=20, positions=[0, 9, 19], limit=2)
    assert [e.position for e in examples] == [0, 0, 9, 9, 19, 19]
    for example in examples:
        assert example.gold_index == example.position
        assert len(example.documents) == 20
        assert example.documents[0].startswith("Document [1](Title: ")
        assert example.documents[19].startswith("Document [20](Title: ")
        assert example.instruction.startswith("Write a high-quality answer for the given question")
        assert example.question == f"Question: {example.meta['question']}\nAnswer:"
        assert example.answers
    # Same question at every position: the gold passage moves, the question does not.
    assert examples[0].meta["question"] == examples[2].meta["question"] == examples[4].meta["question"]
    assert examples[0].documents[0].split(")", 1)[1] == examples[2].documents[9].split(")", 1)[1]


def test_nq10_positions_are_filtered_and_empty_selection_is_an_error():
    assert {e.position for e in load_nq(DATA_DIR, docs=10, positions=[4, 14], limit=1)} == {4}
    with pytest.raises(InvalidInput, match="available"):
        load_nq(DATA_DIR, docs=10, positions=[14, 19], limit=1)


def test_longbench_multidoc_splits_on_passage_markers_and_keeps_all_text():
    examples = load_longbench(DATA_DIR, tasks=["2wikimqa"], limit=2)
    assert len(examples) == 2
    for example in examples:
        assert all(re.match(r"Passage \d+:", d) for d in example.documents)
        assert example.instruction.startswith("Answer the question based on the given passages")
        assert example.question.endswith("Answer:")
        assert example.meta["task"] == "2wikimqa"


def test_longbench_classification_answers_and_paragraph_fallback():
    (lsht,) = load_longbench(DATA_DIR, tasks=["lsht"], limit=1)
    assert lsht.answers == ["教育"]
    text = "\n\n".join(f"para {i} " + "word " * 120 for i in range(5))
    chunks = split_longbench_context(text)
    assert len(chunks) == 5 and all(c.startswith("para") for c in chunks)
    assert split_longbench_context("one line only, no separators.") == ["one line only, no separators."]


def test_gsm8k_demonstrations_are_documents():
    examples = load_gsm8k(DATA_DIR, limit=2)
    assert len(examples) == 2
    demos = examples[0].documents
    assert len(demos) == 8
    assert all(d.startswith("Question:") and "The answer is" in d for d in demos)
    assert examples[0].question.startswith("Question: Janet")
    assert examples[0].meta["answer"] == "18"
    assert examples[0].answers == []


def test_unknown_dataset_and_missing_folder_are_clear_errors(tmp_path):
    with pytest.raises(InvalidInput, match="unknown dataset 'nq30'"):
        load_datasets(["nq30"], DATA_DIR)
    with pytest.raises(InvalidInput, match="not found"):
        load_datasets(["nq20"], tmp_path, limit=1)
