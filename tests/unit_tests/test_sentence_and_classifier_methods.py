"""cpc, tcra-semantic, tcra-summary, llmlingua2 and their engines on tiny randomly initialised models.

The tokenizers are real (MiniLM's BERT word pieces, SmolLM2's BPE with its chat template); the weights are
random, so these tests check mechanics (budget, batching, chunking, protection, errors), not quality.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ctxcompress import Compressor, InvalidInput, UnknownModel
from ctxcompress.engines.encoder import TokenEmbeddings
from ctxcompress.methods._units import question_entities, word_spans
from ctxcompress.methods.llmlingua2 import chunk_words
from ctxcompress.methods.summary_guard import supported_summary
from ctxcompress.methods.tcra_summary import fit_summary
from ctxcompress.text.sentences import split_sentences_with_spans
from ctxcompress.text.tokens import get_target_tokenizer
from tests.conftest import TINY_CLASSIFIER, nq_documents, nq_rows

BUDGET_METHODS = ["cpc", "tcra-semantic", "llmlingua2"]
CLASSIFIER = TINY_CLASSIFIER


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread on a busy machine, only synchronisation overhead."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def compressor(tiny_all_compressor) -> Compressor:
    return tiny_all_compressor


@pytest.fixture(scope="module")
def nq():
    return nq_rows(2)


def request(row: dict, method: str, **budget) -> dict:
    options = {"classifier": CLASSIFIER} if method == "llmlingua2" else {}
    return {
        "method": method,
        "documents": nq_documents(row),
        "question": row["question"],
        "instruction": "Answer the question.",
        "budget": budget or {"rate": 0.25},
        "options": options,
    }


def is_subsequence(small: str, big: str) -> bool:
    remaining = iter(big)
    return all(ch in remaining for ch in small)


# ----------------------------------------------------------------------------------------------- budget
@pytest.mark.parametrize("method", BUDGET_METHODS)
@pytest.mark.parametrize("budget", [{"rate": 0.5}, {"rate": 0.25}, {"max_tokens": 300}])
def test_budget_within_five_percent_and_never_over_on_nq_20doc(compressor, nq, method, budget):
    result = compressor.compress(request(nq[0], method, **budget))
    assert result.compressed_tokens <= result.target_tokens
    assert result.compressed_tokens >= 0.95 * result.target_tokens
    assert result.prompt.startswith("Answer the question.") and result.prompt.endswith(nq[0]["question"])


@pytest.mark.parametrize("method", BUDGET_METHODS)
def test_kept_text_is_an_in_order_piece_of_its_document(compressor, nq, method):
    result = compressor.compress(request(nq[1], method))
    originals = nq_documents(nq[1])
    assert [d.index for d in result.documents] == sorted(d.index for d in result.documents)
    for kept in result.documents:
        assert is_subsequence(kept.text, originals[kept.index])


def test_batch_equals_one_by_one(compressor, nq):
    requests = [request(row, m) for row in nq for m in BUDGET_METHODS]
    for req in requests:
        req["documents"] = req["documents"][:8]
    for req, got in zip(requests, compressor.compress_batch(requests), strict=True):
        alone = compressor.compress(req)
        assert got.prompt == alone.prompt and got.ranking == alone.ranking


# ----------------------------------------------------------------------------------------------- cpc
def test_cpc_keeps_whole_sentences_and_ranks_every_document(compressor, nq):
    req = request(nq[0], "cpc", rate=0.5)
    req["options"] = {"trim_last_sentence": False}
    result = compressor.compress(req)
    assert sorted(result.ranking) == list(range(20))
    kept_indices = {d.index for d in result.documents}
    assert result.dropped_documents == sorted(set(range(20)) - kept_indices)
    tight = compressor.compress(request(nq[0], "cpc", rate=0.1))
    assert tight.dropped_documents == sorted(set(range(20)) - {d.index for d in tight.documents})
    assert tight.dropped_documents, "at rate 0.1 some of 20 documents are dropped whole"
    from ctxcompress.text.sentences import split_sentences

    for kept in result.documents:
        sentences = [s.strip() for s in split_sentences(nq_documents(nq[0])[kept.index])]
        rebuilt = kept.text
        for sentence in sentences:
            rebuilt = rebuilt.replace(sentence, "", 1) if sentence in rebuilt else rebuilt
        assert not rebuilt.strip(), f"not made of whole sentences: {rebuilt!r}"


@pytest.mark.parametrize("framing", [{"instruction": "Summarize the physics history."}, {}])
def test_cpc_without_question_uses_instruction_or_centroid(compressor, nq, framing):
    docs = nq_documents(nq[0])
    result = compressor.compress({"method": "cpc", "documents": docs, **framing, "budget": {"rate": 0.3}})
    assert 0.95 * result.target_tokens <= result.compressed_tokens <= result.target_tokens
    assert sorted(result.ranking) == list(range(20))


def test_sentence_vectors_pool_the_pieces_inside_each_span():
    vectors = np.array([[1, 0], [3, 0], [0, 2], [0, 0]], dtype=np.float32)
    tokens = TokenEmbeddings(vectors, np.array([[0, 3], [4, 8], [10, 14], [15, 16]]))
    pooled = tokens.span_vectors([(0, 10), (10, 15), (15, 20), (20, 25)])
    np.testing.assert_allclose(pooled[0], [1, 0])
    np.testing.assert_allclose(pooled[1], [0, 1])
    np.testing.assert_allclose(pooled[2:], 0)  # a zero vector and a span with no pieces


def test_encoder_windows_cover_every_piece_and_match_a_single_pass(tiny_encoder, nq):
    text = nq_documents(nq[0])[0] * 3
    ids, offsets = tiny_encoder.encode(text)
    windowed = tiny_encoder.token_embeddings([text, "short text"], overlap=16)
    assert windowed[0].vectors.shape == (len(ids), tiny_encoder.dimension)
    assert [tuple(o) for o in windowed[0].offsets] == offsets
    assert len(ids) > tiny_encoder.max_length  # several windows were needed
    single = tiny_encoder._forward([tiny_encoder.encode("short text")[0]])[0, 1:-1]
    np.testing.assert_allclose(windowed[1].vectors, single, atol=1e-5)
    # The first pieces are seen by one window only: equal to that window's own pass.
    first = tiny_encoder._forward([ids[: tiny_encoder.max_length - 2]])[0, 1:-1]
    np.testing.assert_allclose(windowed[0].vectors[:10], first[:10], atol=1e-5)


def test_encoder_windows_in_length_bands_pool_what_the_cap_alone_pools(tiny_encoder, nq, monkeypatch):
    """The windows planned in length bands (more, tighter passes) give the span vectors and text embeddings
    that the plan by the pass cap alone gives (each piece's vector is the mean over the windows that saw it)."""
    from ctxcompress.engines import batching, encoder

    texts = nq_documents(nq[0])[:6] + [nq_documents(nq[1])[0] * 2, "A short one."]
    spans = [split_sentences_with_spans(t) for t in texts]
    passes: dict[str, int] = {}

    def planned(name: str, **fixed):  # noqa: ANN003, ANN202
        def plan(lengths, **kwargs):  # noqa: ANN001, ANN202
            batches = batching.plan_batches(lengths, **{**kwargs, **fixed})
            passes[name] = len(batches)
            return batches

        return plan

    monkeypatch.setattr(encoder, "plan_batches", planned("cap", padding_tolerance=None))
    by_cap = tiny_encoder._span_embeddings(texts, spans, 16)
    monkeypatch.setattr(encoder, "plan_batches", planned("bands", min_batch_tokens=256))
    by_bands = tiny_encoder._span_embeddings(texts, spans, 16)
    assert passes["bands"] > passes["cap"]
    for got, want in zip(by_bands, by_cap, strict=True):
        np.testing.assert_allclose(got.spans, want.spans, atol=1e-6)
        np.testing.assert_allclose(got.pooled, want.pooled, atol=1e-6)


# ----------------------------------------------------------------------------------------------- tcra-semantic
def test_tcra_semantic_never_drops_numbers_or_question_names(compressor):
    docs = [
        "In 1903 Marie Curie and Pierre Curie shared the physics prize with Henri Becquerel for their "
        "joint research on the radiation phenomena that had been discovered earlier. " * 3,
        "The committee met 27 times that year, and the ceremony in Stockholm was attended by 1,200 guests. " * 3,
    ]
    result = compressor.compress(
        {
            "method": "tcra-semantic",
            "documents": docs,
            "question": "What did Becquerel share with Curie?",
            "budget": {"rate": 0.5},
        }
    )
    text = " ".join(d.text for d in result.documents)
    for must in ("1903", "27", "1,200", "Becquerel", "Curie"):
        assert must in text
    assert text.count("Becquerel") == docs[0].count("Becquerel")
    assert 0.95 * result.target_tokens <= result.compressed_tokens <= result.target_tokens


def test_question_entities_skip_the_question_word():
    assert question_entities("Who did Marie Curie marry in Paris?") == ["Curie", "Marie", "Paris"]
    assert question_entities(None) == []


def test_word_spans_cover_the_text():
    text = "  alpha beta\n\ngamma  "
    spans = word_spans(text)
    assert "".join(text[s:e] for s, e in spans) == text
    assert [text[s:e].strip() for s, e in spans] == ["alpha", "beta", "gamma"]


# ----------------------------------------------------------------------------------------------- llmlingua2
def test_llmlingua2_threshold_is_global_over_the_request(compressor, bert_tokenizer):
    vocab = sorted(w for w in bert_tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) > 3)[:240]
    docs = [" ".join(vocab[i : i + 60]) + "." for i in range(0, 240, 60)]  # distinct words: unambiguous
    result = compressor.compress(
        {"method": "llmlingua2", "documents": docs, "budget": {"rate": 0.4}, "options": {"classifier": CLASSIFIER}}
    )
    classifier = compressor.pool.classifier(CLASSIFIER)
    kept_words = {w for d in result.documents for w in d.text.split()}
    kept_probs, dropped_probs = [], []
    for doc in docs:
        words = [doc[s:e].strip() for s, e in word_spans(doc)]
        for word, p in zip(words, classifier.keep_probabilities([words])[0], strict=True):
            (kept_probs if word in kept_words else dropped_probs).append(p)
    assert len(kept_probs) > 20 and len(dropped_probs) > 20
    assert min(kept_probs) >= max(dropped_probs) - 1e-5  # one threshold across all documents
    per_doc = [sum(w in kept_words for w in doc.split()) for doc in docs]
    assert len(set(per_doc)) > 1  # not a uniform per-chunk rate


def test_chunks_end_at_sentences_and_fit_the_window():
    text = "One two three. Four five six seven. Eight nine. " + "ten " * 12
    spans = word_spans(text)
    chunks = chunk_words(text, spans, [1] * len(spans), 6, "english")
    assert [w for c in chunks for w in c] == list(range(len(spans)))
    assert all(len(c) <= 6 for c in chunks)
    assert chunks[0] == [0, 1, 2]  # the second sentence does not fit after the first: new chunk


def test_llmlingua2_coarse_filter_ranks_documents(compressor, nq):
    req = request(nq[0], "llmlingua2", rate=0.25)
    req["options"]["coarse"] = True
    result = compressor.compress(req)
    assert sorted(result.ranking) == list(range(20))
    assert len(result.documents) < 20
    assert result.compressed_tokens <= result.target_tokens


@pytest.mark.parametrize(
    ("options", "question", "error", "field"),
    [
        ({}, "q?", InvalidInput, "options.classifier"),
        ({"classifier": CLASSIFIER, "coarse": True}, None, InvalidInput, "question"),
        ({"classifier": "/tmp/model"}, "q?", UnknownModel, "options.classifier"),
    ],
)
def test_llmlingua2_refuses_missing_or_unknown_classifier(compressor, options, question, error, field):
    with pytest.raises(error) as info:
        compressor.compress(
            {
                "method": "llmlingua2",
                "documents": ["a b c d e"] * 20,
                "question": question,
                "budget": {"rate": 0.5},
                "options": options,
            }
        )
    assert info.value.field == field


def test_unknown_encoder_and_generator_names_are_refused(compressor):
    for method, option in (("cpc", "encoder"), ("tcra-semantic", "encoder"), ("tcra-summary", "generator")):
        with pytest.raises(UnknownModel) as info:
            compressor.compress(
                {
                    "method": method,
                    "documents": ["a b c d e"] * 20,
                    "budget": {"rate": 0.5},
                    "options": {option: "tiny-classifier"},
                }
            )
        assert info.value.field == f"options.{option}"


# ----------------------------------------------------------------------------------------------- tcra-summary
def test_tcra_summary_never_exceeds_the_budget(compressor, nq):
    docs = nq_documents(nq[0])[:3]
    for budget in ({"rate": 0.3}, {"max_tokens": 60}):
        result = compressor.compress(
            {
                "method": "tcra-summary",
                "documents": docs,
                "question": nq[0]["question"],
                "budget": budget,
                "options": {"max_new_tokens": 24},
            }
        )
        assert result.compressed_tokens <= result.target_tokens
        assert result.prompt.endswith(nq[0]["question"])


def test_fit_summary_cuts_at_a_sentence_then_a_word_boundary():
    target = get_target_tokenizer()
    summary = "Curie won in 1903. She won again in 1911. Both were Nobel prizes."
    assert fit_summary(summary, 17, target, "english") == "Curie won in 1903. She won again in 1911."
    cut = fit_summary("one two three four five six seven eight", 3, target, "english")
    assert cut == "one two three"


def test_faithfulness_guard_drops_sentences_with_names_or_numbers_the_source_lacks():
    source = (
        "Santiago Ramón y Cajal was a Spanish neuroscientist and pathologist, specializing in neuroanatomy. "
        "He won the Nobel Prize in 1906 with Camillo Golgi."
    )
    swapped = supported_summary("Marie Curie worked on neuroanatomy. Cajal won the Nobel Prize in 1906.", source)
    assert swapped.text == "Cajal won the Nobel Prize in 1906." and (swapped.dropped, swapped.sentences) == (1, 2)
    assert supported_summary("Meyer Olf Grau studied the brain.", source).text == ""  # an invented person
    assert supported_summary("He won it in 1907.", source).text == ""  # a number the source does not hold
    paraphrase = "Cajal, a Spanish neuroscientist, shared the 1906 Nobel Prize with Golgi."
    assert supported_summary(paraphrase, source).text == paraphrase


def test_tcra_summary_keeps_only_supported_text_or_the_documents_own_lead(compressor, nq):
    """The tiny random generator writes gibberish: the guard must replace it with the documents' own sentences."""
    docs = nq_documents(nq[0])[:3]
    request = {"method": "tcra-summary", "documents": docs, "question": nq[0]["question"], "budget": {"rate": 0.4}}
    guarded = compressor.compress(request | {"options": {"max_new_tokens": 24}})
    for kept in guarded.documents:
        source = docs[kept.index]
        assert source.startswith(kept.text) or supported_summary(kept.text, source).dropped == 0
    assert guarded.compressed_tokens <= guarded.target_tokens
    unguarded = compressor.compress(request | {"options": {"max_new_tokens": 24, "faithful": False}})
    assert any(not docs[k.index].startswith(k.text) for k in unguarded.documents)  # the guard changed something


def test_generator_batches_like_single_calls_and_respects_each_limit(tiny_generator, tiny_seq2seq):
    prompts = ["Summarize: the cat sat on the mat.", "A much longer prompt " * 10, "Hi"]
    for generator in (tiny_generator, tiny_seq2seq):
        batched = generator.generate(prompts, [5, 3, 0])
        assert batched[2] == ""
        for prompt, limit, got in zip(prompts[:2], [5, 3], batched, strict=False):
            assert got == generator.generate([prompt], [limit])[0]
            assert generator.count(got) <= limit + 1  # decoding may merge/split one piece at the edge


# ----------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("method", ["cpc", "tcra-semantic", "llmlingua2", "tcra-summary"])
def test_blank_cjk_emoji_and_json_documents_give_valid_output(compressor, method):
    payload = {"user": {"name": "Zoë", "id": 12345, "tags": ["a", "b"]}}
    docs = [
        "",
        "   \n\t ",
        "東京は日本の首都です。人口は約1400万人です。富士山は日本一高い山で、標高は3776メートルです。" * 2,
        "Party time 🎉🎉 with emoji 👩‍👩‍👧 families and café crème at 9:30 in Zürich. " * 2,
        json.dumps(payload, ensure_ascii=False),
    ]
    options = {"classifier": CLASSIFIER} if method == "llmlingua2" else {}
    if method == "tcra-summary":
        options = {"max_new_tokens": 8}
    result = compressor.compress(
        {
            "method": method,
            "documents": docs,
            "question": "What is the capital?",
            "budget": {"rate": 0.5},
            "options": options,
        }
    )
    assert "\ufffd" not in result.prompt
    result.prompt.encode("utf-8")
    assert result.compressed_tokens <= result.target_tokens
    assert all(d.index >= 2 for d in result.documents)
    if method != "tcra-summary":
        for kept in result.documents:
            assert is_subsequence(kept.text, docs[kept.index])
        by_index = {d.index: d.text for d in result.documents}
        if method == "tcra-semantic" and 4 in by_index:  # JSON keys and numbers are protected
            assert '"id":' in by_index[4] and "12345" in by_index[4]


def test_one_encoder_pass_gives_the_texts_own_embeddings_and_span_vectors(tiny_encoder):
    """``pooled`` is what ``embed`` returns for a text that fits one window; a span's vector is the normalised
    mean of its pieces (late chunking), zero for a span without pieces."""
    texts = ["Which river flows into the sea?", "The Nile flows north. It is long. Cairo lies on it.", "東京 🙂"]
    embedded = tiny_encoder.token_embeddings(texts)
    np.testing.assert_allclose(np.stack([e.pooled for e in embedded]), tiny_encoder.embed(texts), atol=1e-5)
    nile = embedded[1]
    spans = [(0, 22), (22, 34), (34, len(texts[1])), (len(texts[1]), len(texts[1]))]
    vectors = nile.span_vectors(spans)
    lasts = np.maximum(nile.offsets[:, 0], nile.offsets[:, 1] - 1)
    first = nile.vectors[lasts < 22].mean(axis=0)
    np.testing.assert_allclose(vectors[0], first / np.linalg.norm(first), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-5)
    assert not vectors[3].any()


def test_span_embeddings_on_the_device_equal_host_pooling_of_token_embeddings(tiny_encoder, nq):
    """The device-side pooling of ``span_embeddings`` gives what ``span_vectors`` gives from the token vectors,
    for long (windowed), short, empty and span-less texts."""
    texts = [nq_documents(nq[0])[0] * 3, "The Nile flows north. It is long.", "", "東京 🙂 no spans asked"]
    spans = [split_sentences_with_spans(t) for t in texts[:3]] + [[]]
    spans[1] = [*spans[1], (len(texts[1]), len(texts[1]))]  # a span without pieces: a zero vector
    tokens = tiny_encoder.token_embeddings(texts, overlap=16)
    pooled = tiny_encoder.span_embeddings(texts, spans, overlap=16)
    for t, s, p in zip(tokens, spans, pooled, strict=True):
        assert p.spans.shape == (len(s), tiny_encoder.dimension)
        np.testing.assert_allclose(p.spans, t.span_vectors(s), atol=1e-5)
        np.testing.assert_allclose(p.pooled, t.pooled, atol=1e-6)
    assert len(spans[0]) > 3 and not pooled[1].spans[-1].any() and not pooled[2].pooled.any()
