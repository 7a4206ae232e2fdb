"""LLMLingua / LongLLMLingua mechanics on a tiny random model with the real SmolLM2 tokenizer."""

from __future__ import annotations

import json

import pytest

from ctxcompress import InvalidInput, UnknownModel
from tests.conftest import nq_documents, nq_rows

METHODS = ["llmlingua", "longllmlingua"]


@pytest.fixture(scope="module")
def nq():
    return nq_rows(3)


def request(row: dict, method: str, **budget) -> dict:
    return {
        "method": method,
        "documents": nq_documents(row),
        "question": row["question"],
        "instruction": "Answer the question.",
        "budget": budget or {"rate": 0.25},
    }


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("budget", [{"rate": 0.25}, {"rate": 0.5}, {"max_tokens": 400}])
def test_budget_is_met_within_five_percent(tiny_compressor, nq, method, budget):
    result = tiny_compressor.compress(request(nq[0], method, **budget))
    assert abs(result.compressed_tokens / result.target_tokens - 1) <= 0.05
    assert result.compressed_tokens == tiny_compressor.prepare(request(nq[0], method, **budget)).target.count(
        result.prompt
    )
    assert result.prompt.startswith("Answer the question.")
    assert result.prompt.endswith(nq[0]["question"])
    assert result.ratio == pytest.approx(result.origin_tokens / result.compressed_tokens, rel=1e-3)


@pytest.mark.parametrize("method", METHODS)
def test_kept_documents_are_pieces_of_their_originals(tiny_compressor, nq, method):
    result = tiny_compressor.compress(request(nq[1], method))
    originals = nq_documents(nq[1])
    assert result.documents, "something must be kept"
    for kept in result.documents:
        remaining = iter(originals[kept.index])
        assert all(ch in remaining for ch in kept.text), "kept text must be a subsequence of its original"
        assert len(kept.text) <= len(originals[kept.index])


def test_longllmlingua_sorts_by_its_ranking_and_reports_it(tiny_compressor, nq):
    result = tiny_compressor.compress(request(nq[0], "longllmlingua"))
    assert sorted(result.ranking) == list(range(20))
    order = [d.index for d in result.documents]
    assert order == [i for i in result.ranking if i in order]


def test_batch_equals_one_by_one(tiny_compressor, nq):
    requests = [request(row, method) for row in nq for method in METHODS]
    batched = tiny_compressor.compress_batch(requests)
    for req, got in zip(requests, batched, strict=True):
        alone = tiny_compressor.compress(req)
        assert got.prompt == alone.prompt
        assert got.ranking == alone.ranking


def test_budget_at_or_above_input_returns_input_unchanged(tiny_compressor):
    docs = ["Alpha beta gamma.", "   ", "Delta epsilon."]
    result = tiny_compressor.compress({"method": "llmlingua", "documents": docs, "budget": {"max_tokens": 10_000}})
    assert result.ratio == 1.0
    assert [d.index for d in result.documents] == [0, 2]
    assert result.prompt == "Alpha beta gamma.\n\nDelta epsilon."


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"documents": []}, "documents", "empty"),
        ({"documents": ["  ", "\n"]}, "documents", "whitespace"),
        ({"documents": ["a b c"], "method": "nope"}, "method", "valid methods: "),
        ({"documents": ["a b c"], "method": "llmlingua", "options": {"windw": 3}}, "options.windw", "window"),
        ({"documents": ["a b c"], "method": "longllmlingua"}, "question", "needs a question"),
        (
            {
                "documents": ["a b c d e f g h"] * 3,
                "question": "what is the meaning of all these letters here?",
                "budget": {"max_tokens": 3},
            },
            "budget",
            "cannot hold",
        ),
        ({"documents": ["x"], "budget": {"rate": 0}}, "budget.rate", "greater than"),
    ],
)
def test_bad_input_is_a_clear_error(tiny_compressor, payload, field, message):
    with pytest.raises(InvalidInput) as info:
        tiny_compressor.compress(payload)
    assert info.value.field == field
    assert message in info.value.message


def test_unknown_scorer_model_is_refused_by_name(tiny_compressor):
    with pytest.raises(UnknownModel, match="configured models"):
        tiny_compressor.compress(
            {
                "method": "llmlingua",
                "documents": ["a b c"] * 50,
                "budget": {"rate": 0.5},
                "options": {"scorer": "/etc/passwd"},
            }
        )


@pytest.mark.parametrize("method", METHODS)
def test_multilingual_json_and_code_survive_as_valid_text(tiny_compressor, method):
    payload = {"user": {"name": "Zoë", "id": 12345, "tags": ["a", "b"]}, "url": "https://example.com/x?y=1"}
    docs = [
        "東京は日本の首都です。人口は約1400万人です。富士山は日本一高い山で、標高は3776メートルです。" * 3,
        "Party time 🎉🎉 with emoji 👩‍👩‍👧 families and café crème at 9:30 in Zürich. " * 3,
        json.dumps(payload, ensure_ascii=False),
        "```python\ndef add(a, b):\n    return a + b\n```\nThe function add returns the sum of two numbers. " * 2,
    ]
    result = tiny_compressor.compress(
        {"method": method, "documents": docs, "question": "What is the capital?", "budget": {"rate": 0.5}}
    )
    assert "\ufffd" not in result.prompt
    result.prompt.encode("utf-8")  # no lone surrogates
    by_index = {d.index: d.text for d in result.documents}
    if 2 in by_index:  # JSON keys and numbers are protected
        for key in ('"user":', '"name":', '"id":', "12345"):
            assert key in by_index[2]
    if 3 in by_index:
        assert "return a + b" in by_index[3]
    for text in by_index.values():
        for digits in ("1400", "3776", "9:30"):
            assert digits in docs[0] + docs[1] or digits not in text
