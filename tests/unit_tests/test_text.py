from __future__ import annotations

from ctxcompress.engines.batching import plan_batches
from ctxcompress.text import get_target_tokenizer, protected_spans, split_sentences, split_sentences_with_spans
from ctxcompress.text.recovery import recover


def test_sentence_spans_cover_text_exactly():
    text = "  Dr. Smith went to Washington. He arrived at 3 p.m. on Jan. 5. Then he left! 你好。世界。"
    spans = split_sentences_with_spans(text)
    assert "".join(text[s:e] for s, e in spans) == text
    sentences = [s.strip() for s in split_sentences(text)]
    assert sentences[:3] == ["Dr. Smith went to Washington.", "He arrived at 3 p.m. on Jan. 5.", "Then he left!"]
    assert sentences[3:] == ["你好。", "世界。"]
    assert split_sentences("   ") == []


def test_protected_spans_find_numbers_urls_code_json_and_forced():
    text = 'Call 555-1234 or see https://x.org/a?b=1 and `run()` "word"'
    spans = protected_spans(text, force_tokens=['"word"'])
    covered = {text[s:e] for s, e in spans}
    assert {"555-1234", "https://x.org/a?b=1", "`run()`", '"word"'} <= covered
    json_text = '{"key": [1, 2], "other": "value"}'
    covered = "".join(json_text[s:e] for s, e in protected_spans(json_text))
    assert '"key":' in covered and '"other":' in covered and "value" not in covered.replace('"other":', "")


def test_target_tokenizer_is_offline_cl100k():
    tok = get_target_tokenizer()
    assert tok.count("hello world") == 2
    assert tok.decode(tok.encode("héllo 世界 🎉")) == "héllo 世界 🎉"


def test_plan_batches_caps_padded_tokens_and_covers_every_index():
    lengths = [5, 100, 7, 90, 300, 1, 50]
    batches = plan_batches(lengths, max_padded_tokens=200)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 200
    assert plan_batches(lengths, max_padded_tokens=10_000, max_batch_size=3)[0] == [4, 1, 3]


def test_recover_restores_pruned_fragments():
    original = "The first Nobel Prize in Physics went to Wilhelm Conrad Röntgen in 1901 for X-rays."
    compressed = "first Nobel Physics Wilhelm Rönt 1901"
    response = "It was Wilhelm Rönt, in 1901."
    assert recover(original, compressed, response) == "It was Wilhelm Conrad Röntgen, in 1901."
    assert recover(original, compressed, "No idea.") == "No idea."


def test_kept_spans_locate_extractive_text_and_refuse_abstractive_text():
    from ctxcompress.text.alignment import dropped_spans, kept_spans

    original = "The Nile is a major river. It flows north into the Mediterranean Sea. Paris is in France."
    spans = kept_spans(original, "The Nile is a major river. Paris is in France.")
    assert [original[a:b] for a, b in spans] == ["The Nile is a major river.", "Paris is in France."]
    assert dropped_spans(len(original), spans) == [(26, 70)]
    words = kept_spans(original, "Nile major river flows north Mediterranean")
    assert [original[a:b] for a, b in words] == ["Nile", "major river", "flows north", "Mediterranean"]
    assert kept_spans(original, "The Danube is long.") is None  # not taken from the document
    assert kept_spans(original, "") == [] and dropped_spans(len(original), []) == [(0, len(original))]


def test_largest_fitting_from_a_guess_finds_what_binary_search_finds():
    """Exponential search out of any guess returns the largest fitting k, in few calls near the answer."""
    import random

    from ctxcompress.methods._units import largest_fitting

    rng = random.Random(0)
    for _ in range(3000):
        count, calls = rng.randint(0, 80), []
        answer = rng.randint(0, count)

        def fits(k: int, answer: int = answer, calls: list = calls) -> bool:
            calls.append(k)
            return k <= answer

        guess = rng.choice([None, rng.randint(-5, count + 5), answer])
        assert largest_fitting(count, fits, guess) == answer
        assert all(0 <= k <= count for k in calls)
        if guess == answer and 0 < answer < count:
            assert len(calls) == 2  # the guess fits, the next one does not


def test_special_token_text_counts_as_ordinary_text() -> None:
    """User content that spells a special token is billed as text: never one special id, never an error."""
    tokenizer = get_target_tokenizer()
    text = "Before <|endoftext|> after <|fim_prefix|>."
    ids = tokenizer.encode(text)
    assert tokenizer.count(text) == len(ids) == tokenizer.count_many([text])[0]
    assert ids == tokenizer._encoding.encode(text, disallowed_special=())
    assert tokenizer._encoding.eot_token not in ids and tokenizer.decode(ids) == text


def test_a_request_counts_each_distinct_piece_once(monkeypatch) -> None:  # noqa: ANN001
    """Budget fitting and the result count candidate prompts piece by piece (a document with the blank line after
    it): each distinct piece is tokenized once per request, the pieces of the request's own prompt already in
    `prepare`, and the sums are the whole prompts' counts."""
    from ctxcompress.methods.base import BaseOptions
    from ctxcompress.prompting import prepare
    from ctxcompress.types import CompressionRequest

    request = CompressionRequest(documents=["The Nile flows north.", "Paris is in France."], question="Where?")
    prepared = prepare(request, BaseOptions)
    calls: list[str] = []
    count = prepared.target.count
    monkeypatch.setattr(prepared.target, "count", lambda text: calls.append(text) or count(text))
    for kept in (["The Nile flows north."], ["Paris is in France."], ["The Nile flows north.", "Paris is in France."]):
        assert prepared.count_prompt(kept) == count(prepared.prompt_for(kept))
    assert calls == []  # every piece was counted in prepare
    assert prepared.count_prompt(["The Nile flows.", "Paris is in France."]) == count(
        prepared.prompt_for(["The Nile flows.", "Paris is in France."])
    )
    assert calls == ["The Nile flows.\n\n"]  # only the changed document
    prepared.count_prompt(["The Nile flows."])
    assert len(calls) == 1
    other = prepare(request, BaseOptions)  # another request does not see this one's counts
    before = len(calls)
    other.count_prompt(["The Nile flows."])
    assert calls[before:] == ["The Nile flows.\n\n"]


def test_the_word_bound_is_close_under_the_count_on_english_and_never_above_it() -> None:
    from tests.conftest import nq_documents, nq_rows

    tokenizer = get_target_tokenizer()
    texts = [d for row in nq_rows(3, gold=0) for d in nq_documents(row)]
    bounds, counts = [tokenizer.at_least(t) for t in texts], tokenizer.count_many(texts)
    assert all(b <= c for b, c in zip(bounds, counts, strict=True))
    assert sum(bounds) >= 0.6 * sum(counts)  # tight enough to spare most exact counts of the budget fill
    assert tokenizer.at_least("東京は日本の首都です。") == 1 and tokenizer.at_least("a\x1cb") == 0
