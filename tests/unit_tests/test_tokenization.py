"""OffsetTokenizer: the Rust backend called directly gives what the transformers tokenizer call gives."""

from __future__ import annotations

import pytest

from ctxcompress.engines.tokenization import OffsetTokenizer

TEXTS = [
    "",
    "Paris is the capital of France. It has 2,102,650 inhabitants (2023).",
    "東京は日本の首都です。人口は約1400万人。",
    "emoji 🙂👍🏽 and combining e\u0301 marks",
    '{"key": [1, 2.5e-3, null], "nested": {"a": "b"}}\n```python\ndef f(x):\n    return x ** 2\n```',
    "  leading and trailing spaces \n\n\t",
    "word " * 700,  # longer than MiniLM's 128-piece truncation and its 512 positions
]


def _reference(tokenizer, texts):  # noqa: ANN001
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return [
        (list(ids), [tuple(o) for o in offsets])
        for ids, offsets in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
    ]


@pytest.mark.parametrize("which", ["smollm2", "minilm"])
def test_backend_encodings_equal_the_transformers_call(which, smollm2_dir, minilm_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir if which == "smollm2" else minilm_dir)
    if which == "minilm":  # as its tokenizer.json ships (the transformers call switches both off per call)
        tokenizer.backend_tokenizer.enable_truncation(128)
        tokenizer.backend_tokenizer.enable_padding(length=128)
    fast = OffsetTokenizer(tokenizer)
    got = fast(TEXTS)
    assert len(got[-1][0]) >= 700  # not truncated, not padded
    assert got == _reference(tokenizer, TEXTS)
    assert fast([]) == []


def test_a_slow_tokenizer_goes_through_the_transformers_call(bert_tokenizer):
    class Slow:  # no backend_tokenizer: the transformers call path
        def __call__(self, texts, **kwargs):  # noqa: ANN001, ANN003, ANN204
            return bert_tokenizer(texts, **kwargs)

    assert OffsetTokenizer(Slow())(TEXTS[:3]) == _reference(bert_tokenizer, TEXTS[:3])
