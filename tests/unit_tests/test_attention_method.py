"""Question-to-context attention (engine and method) and the hybrid pipeline, on tiny random models."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from ctxcompress.engines.attention import ObservedSequence, QuestionAttention, naive_window_attention
from ctxcompress.methods._units import sentence_units
from tests.conftest import nq_documents, nq_rows


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return nq_rows(2, gold=4)


def _probe(scorer, prefill: str, **kwargs: object) -> QuestionAttention:
    """The probe running its prefills on the scorer's fused decoder, or on the model's transformers modules."""
    decoder = scorer.decoder if prefill == "fused" else None
    if prefill == "fused":
        assert decoder.name == "fused"
    return QuestionAttention(scorer.model, pad_id=scorer.pad_id, decoder=decoder, **kwargs)


@pytest.mark.parametrize("prefill", ["fused", "transformers"])
@pytest.mark.parametrize("graphs", ["off", "on"])  # "on" on CPU: bucketed static shapes (rows, length, window)
def test_window_attention_equals_the_naive_full_attention_rows(tiny_scorer, graphs, prefill):
    probe = _probe(tiny_scorer, prefill, max_pass_tokens=96, graphs=graphs)
    sequences = [
        ObservedSequence(list(range(5, 65)), 50),
        ObservedSequence(list(range(7, 27)), 12),  # padded in a batch with the longer one
        ObservedSequence(list(range(3, 13)), 9),
    ]
    for sequence, got in zip(sequences, probe.window_attention(sequences), strict=True):
        want = naive_window_attention(tiny_scorer.model, sequence.ids, sequence.window_start)
        assert got.shape == (probe.num_layers, len(sequence.ids))
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)  # a softmax over the visible keys
    assert bool(probe._shapes) == (graphs == "on") and probe.captured == 0  # no CUDA here: nothing captured


def test_the_pass_inputs_hold_each_rows_tokens_and_window_and_padding_rows_see_one_key(tiny_scorer):
    """The host arrays a pass is filled from, against the rule written out row by row (a static shape has more
    rows and slots than the batch: padding rows see only their first key, so no softmax is empty)."""
    probe = _probe(tiny_scorer, "fused")
    rows = [
        ObservedSequence(list(range(5, 65)), 50),
        ObservedSequence([9], 0),
        ObservedSequence(list(range(7, 27)), 12),
    ]
    inputs = probe._fill(probe._buffers(5, 64, 16), rows)
    tokens = torch.full((5, 64), probe.pad_id, dtype=torch.long)
    key_valid = torch.zeros((5, 64), dtype=torch.bool)
    key_valid[:, 0] = True
    window = torch.zeros((5, 16), dtype=torch.long)
    window_valid = torch.zeros((5, 16), dtype=torch.bool)
    for r, row in enumerate(rows):
        n = len(row.ids)
        tokens[r, :n], key_valid[r, :n] = torch.tensor(row.ids), True
        for j in range(16):
            window[r, j] = min(row.window_start + j, n - 1)
            window_valid[r, j] = row.window_start + j < n
    for got, want in ((inputs.tokens, tokens), (inputs.key_valid, key_valid), (inputs.window, window)):
        assert torch.equal(got, want)
    assert torch.equal(inputs.window_valid, window_valid)


def test_passes_above_the_graph_limit_run_at_exact_shapes_and_keep_no_buffers(tiny_scorer, monkeypatch):
    """Static shapes (graphs on) only up to GRAPH_MAX_TOKENS padded tokens: a larger pass (an overload batch)
    keeps no per-shape buffers or graph (GPU memory would step up with every new large shape) and reads the same
    attention as the exact-shape path."""
    from ctxcompress.engines import attention

    monkeypatch.setattr(attention, "GRAPH_MAX_TOKENS", 128)
    probe = _probe(tiny_scorer, "fused", graphs="on")
    small = [ObservedSequence(list(range(5, 65)), 50)]  # 1 row x 64 slots: static
    large = [ObservedSequence(list(range(5, 65)), 50), ObservedSequence(list(range(7, 70)), 40)] * 2  # 4 x 64
    probe.window_attention(small)
    assert len(probe._shapes) == 1
    exact = _probe(tiny_scorer, "fused", graphs="off").window_attention(large)
    for got, want in zip(probe.window_attention(large), exact, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert len(probe._shapes) == 1


@pytest.mark.parametrize("prefill", ["fused", "transformers"])
@pytest.mark.parametrize("graphs", ["off", "on"])
def test_reading_some_layers_gives_their_rows_and_zeros_elsewhere(tiny_scorer, graphs, prefill):
    probe = _probe(tiny_scorer, prefill, graphs=graphs)
    sequence = [ObservedSequence(list(range(5, 45)), 30)]
    full = probe.window_attention(sequence)[0]
    top = probe.window_attention(sequence, layers=[-1])[0]
    np.testing.assert_allclose(top[-1], full[-1], atol=1e-6)
    assert not top[:-1].any()


def test_the_pool_runs_the_probe_on_the_scorers_fused_decoder(tiny_compressor, tiny_scorer):
    probe = tiny_compressor.pool.attention("smollm2-135m")
    assert probe.decoder is tiny_scorer.decoder and probe.decoder.name == "fused"


def test_scorer_passes_are_unchanged_by_the_registered_probe(tiny_scorer):
    ids = list(range(10, 60))
    before = tiny_scorer.token_nll([ids])[0]
    QuestionAttention(tiny_scorer.model, pad_id=tiny_scorer.pad_id)
    np.testing.assert_allclose(tiny_scorer.token_nll([ids])[0], before, atol=1e-6)


def request(row: dict, method: str, rate: float, **options: object) -> dict:
    return {
        "method": method,
        "documents": nq_documents(row),
        "question": row["question"],
        "instruction": "Answer the question.",
        "budget": {"rate": rate},
        "options": options,
    }


@pytest.mark.parametrize("method,options", [("attention", {}), ("hybrid", {}), ("hybrid", {"signals": "all"})])
@pytest.mark.parametrize("rate", [0.25, 0.1])
def test_sentence_methods_meet_the_budget_with_whole_sentences_and_headers(
    tiny_all_compressor, rows, method, options, rate
):
    result = tiny_all_compressor.compress(request(rows[0], method, rate, **options))
    assert 0.95 * result.target_tokens <= result.compressed_tokens <= result.target_tokens
    assert sorted(result.ranking) == list(range(20))
    originals = nq_documents(rows[0])
    cut = []
    for kept in result.documents:
        original = originals[kept.index]
        header, spans = sentence_units(original, "english")
        assert kept.text.startswith(original[:header].rstrip()), "the document header leads its kept text"
        body = kept.text[header:].strip()
        for start, end in spans:  # what is left after removing whole sentences is at most one sentence's start
            sentence = original[start:end].strip()
            body = body.replace(sentence, "", 1) if sentence and sentence in body else body
        if body.strip():
            cut.append(body.strip())
    assert len(cut) <= 1, f"not made of whole sentences: {cut!r}"
    assert all(any(original.find(piece) >= 0 for original in originals) for piece in cut)
    order = [d.index for d in result.documents]
    assert order == [i for i in result.ranking if i in order], "best-first by default"


def test_original_order_and_cjk(tiny_all_compressor):
    docs = [
        "Document [1](Title: 东京) 东京是日本的首都。它是世界上人口最多的城市之一。东京有很多博物馆。",
        "Document [2](Title: Emoji) Rockets 🚀 fly to space. They carry satellites 🛰️ into orbit every year.",
        "Document [3](Title: Code) def f(x):\n    return x * 2\n\nThe function doubles its input value always.",
    ]
    for method in ("attention", "hybrid"):
        result = tiny_all_compressor.compress(
            {
                "method": method,
                "documents": docs,
                "question": "日本的首都是哪里？",
                "budget": {"rate": 0.6},
                "options": {"reorder": "original"},
            }
        )
        assert result.compressed_tokens <= result.target_tokens
        assert [d.index for d in result.documents] == sorted(d.index for d in result.documents)
        for kept in result.documents:
            assert kept.text.encode("utf-8").decode("utf-8") == kept.text


def test_attention_layers_are_validated(tiny_all_compressor, rows):
    from ctxcompress import InvalidInput

    with pytest.raises(InvalidInput) as info:
        tiny_all_compressor.compress(request(rows[0], "attention", 0.25, layers=[99]))
    assert info.value.field == "options.layers"


def test_fitted_layer_weights_rank_documents_and_are_validated(tiny_all_compressor, tiny_scorer, rows):
    from pydantic import ValidationError

    from ctxcompress import InvalidInput
    from ctxcompress.methods.attention import AttentionOptions

    layers = tiny_scorer.model.config.num_hidden_layers
    for layer in range(layers):  # all weight on one layer ranks as that layer's mean attention does
        one_hot = [1.0 if i == layer else 0.0 for i in range(layers)]
        fitted = tiny_all_compressor.compress(request(rows[0], "attention", 0.25, layer_weights=one_hot))
        plain = tiny_all_compressor.compress(request(rows[0], "attention", 0.25, layers=[layer]))
        assert fitted.ranking == plain.ranking
    with pytest.raises(InvalidInput) as info:
        tiny_all_compressor.compress(request(rows[0], "attention", 0.25, layer_weights=[1.0] * (layers + 1)))
    assert info.value.field == "options.layer_weights"
    with pytest.raises(ValidationError):
        AttentionOptions(layer_weights=[float("nan")] * layers)


def test_long_input_is_chunked_with_the_question_in_every_chunk(tiny_all_compressor, tiny_scorer, rows):
    from ctxcompress.methods.attention import sentence_attention

    probe = QuestionAttention(tiny_scorer.model, pad_id=tiny_scorer.pad_id)
    docs = nq_documents(rows[0])
    small = sentence_attention(tiny_scorer, probe, [(docs, rows[0]["question"])], chunk_tokens=256)[0]
    assert all(len(s.scores) == len(sentence_units(d, "english")[1]) for s, d in zip(small, docs, strict=True))
    assert all(np.isfinite(s.scores).all() and (s.scores > 0).all() for s in small if len(s.scores))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (run on the device)")
@pytest.mark.parametrize("prefill", ["fused", "transformers"])
def test_graphed_probe_on_cuda_replays_the_eager_result(tiny_scorer, prefill):
    """On a GPU: the first pass at a shape is recorded, later ones replay it; both equal the eager probe."""
    import copy

    from ctxcompress.engines.decoder import build_decoder

    model = copy.deepcopy(tiny_scorer.model).cuda()
    decoder = build_decoder(model, prefill)
    eager = QuestionAttention(model, pad_id=tiny_scorer.pad_id, graphs="off", decoder=decoder)
    graphed = QuestionAttention(model, pad_id=tiny_scorer.pad_id, graphs="auto", decoder=decoder)
    sequences = [ObservedSequence(list(range(5, 65)), 50), ObservedSequence(list(range(7, 27)), 12)]
    recorded = graphed.window_attention(sequences, layers=[-1])  # the recording's own (eager) warm-up result
    assert graphed.captured == 1
    replayed = graphed.window_attention(sequences, layers=[-1])
    again = graphed.window_attention(sequences, layers=[-1])
    assert graphed.captured == 1
    eager_rows = eager.window_attention(sequences, layers=[-1])
    for a, b, c, d in zip(recorded, replayed, again, eager_rows, strict=True):
        np.testing.assert_array_equal(b, c)  # replays are exact
        np.testing.assert_allclose(a, b, atol=1e-6)  # kernels chosen under capture may round differently
        np.testing.assert_allclose(b, d, atol=1e-5)
    # With the window NLL (the vocabulary head inside the recorded graph): a second recording, replayed exactly.
    from ctxcompress.engines.vocab_head import VocabHead

    head = VocabHead(model.get_output_embeddings(), chunk_rows=1024, fused_nll=decoder.kernels == "triton")
    graphed.head = eager.head = head
    graphed.read_windows(sequences)  # recorded
    first, second = graphed.read_windows(sequences), graphed.read_windows(sequences)
    assert graphed.captured == 2
    for a, b, c in zip(first, second, eager.read_windows(sequences), strict=True):
        np.testing.assert_array_equal(a.nll, b.nll)
        np.testing.assert_allclose(a.nll, c.nll, atol=1e-4)


@pytest.mark.parametrize("prefill", ["fused", "transformers"])
@pytest.mark.parametrize("graphs", ["off", "on"])
def test_window_nll_from_the_probe_equals_the_scorers_token_nll(tiny_scorer, graphs, prefill):
    """The window tokens' NLL read from the attention prefill is the scorer's own NLL of those tokens."""
    decoder = tiny_scorer.decoder if prefill == "fused" else None
    probe = QuestionAttention(
        tiny_scorer.model, pad_id=tiny_scorer.pad_id, graphs=graphs, decoder=decoder, head=tiny_scorer.head
    )
    sequences = [
        ObservedSequence(list(range(5, 65)), 50),
        ObservedSequence(list(range(7, 27)), 12),
        ObservedSequence(list(range(3, 13)), 0),  # the whole row is the window: its first token has no NLL
    ]
    readings = probe.read_windows(sequences, layers=[-1])
    for sequence, reading in zip(sequences, readings, strict=True):
        want = tiny_scorer.token_nll([sequence.ids], prefix=[])[0][sequence.window_start :]
        assert reading.nll.shape == want.shape
        np.testing.assert_allclose(reading.nll, want, atol=1e-4)
        np.testing.assert_allclose(reading.attention, probe.window_attention([sequence], layers=[-1])[0], atol=1e-6)
    assert np.isnan(readings[2].nll[0]) and not np.isnan(readings[0].nll).any()
    with pytest.raises(ValueError, match="vocabulary head"):
        QuestionAttention(tiny_scorer.model, pad_id=tiny_scorer.pad_id, decoder=decoder).read_windows(sequences)


@pytest.mark.parametrize("graphs", ["off", "on"])  # "on": small bands at static shapes, read at once, among eager
def test_length_banded_passes_read_what_one_pass_reads(tiny_scorer, graphs, monkeypatch):
    """A batch planned in length bands (several passes, all queued before any is read) gives every row the
    attention and window NLL that one pass over all the rows gives."""
    from ctxcompress.engines import attention, batching

    sequences = [
        ObservedSequence(list(range(5, 65)), 50),
        ObservedSequence(list(range(3, 13)), 0),
        ObservedSequence(list(range(7, 64)), 40),
        ObservedSequence(list(range(9, 40)), 20),
        ObservedSequence(list(range(11, 30)), 15),
        ObservedSequence(list(range(4, 24)), 10),
    ]

    def probe() -> QuestionAttention:
        return _probe(tiny_scorer, "fused", graphs=graphs, head=tiny_scorer.head, max_pass_tokens=4096)

    one_pass = probe().read_windows(sequences)
    passes: list[int] = []

    def banded(lengths, **kwargs):  # noqa: ANN001, ANN202 - the real rule at a batch floor the tiny rows reach
        plan = batching.plan_batches(lengths, **kwargs, min_batch_tokens=64)
        passes.append(len(plan))
        return plan

    monkeypatch.setattr(attention, "plan_batches", banded)
    for got, want in zip(probe().read_windows(sequences), one_pass, strict=True):
        np.testing.assert_allclose(got.attention, want.attention, atol=1e-6)
        np.testing.assert_allclose(got.nll, want.nll, atol=1e-5)
    assert passes == [3]  # 60, 57 | 31, 20, 19 (31 x 2 is still under the floor) | 10 tokens


def test_hybrid_reads_both_lm_signals_from_one_prefill(tiny_all_compressor, tiny_scorer, rows):
    """With likelihood and attention both weighted, the attention is read from LongLLMLingua's likelihood rows, whose
    window NLL is exactly the likelihood signal, and no separate likelihood pass runs."""
    from ctxcompress.methods.attention import sentence_attention
    from ctxcompress.methods.longllmlingua import RANK_DOC_TOKENS, rank_documents

    docs, question = nq_documents(rows[0])[:4], rows[0]["question"]
    docs.append(" ".join([docs[0]] * 12))  # longer than RANK_DOC_TOKENS: its first row carries the likelihood
    probe = tiny_all_compressor.pool.attention("smollm2-135m")
    read = functools.partial(
        sentence_attention,
        tiny_scorer,
        probe,
        [(docs, question)],
        per_document=True,
        window_nll=True,
        likelihood_rows=True,
        chunk_tokens=RANK_DOC_TOKENS,
    )
    scored = read()[0]
    want = rank_documents(tiny_scorer, [docs], [question], restrictive_statement="")[0]
    assert len(tiny_scorer.encode_batch(docs)[-1][0]) > RANK_DOC_TOKENS
    np.testing.assert_allclose([s.window_nll for s in scored], want, atol=1e-4)
    assert all(len(s.scores) == len(sentence_units(d, "english")[1]) for s, d in zip(scored, docs, strict=True))
    ranking_only = read(sentences=False)[0]  # what hybrid asks for: no per-sentence pooling, same document signals
    assert [s.mean for s in ranking_only] == [s.mean for s in scored]
    assert [s.window_nll for s in ranking_only] == [s.window_nll for s in scored]
    assert all(not s.spans and not len(s.scores) for s in ranking_only)

    merged = tiny_all_compressor.compress(request(rows[0], "hybrid", 0.25, signals="all"))
    separate = tiny_all_compressor.compress(request(rows[0], "hybrid", 0.25, signals="all", likelihood_statement="."))
    assert "likelihood" not in merged.timings_ms and "attention" in merged.timings_ms
    assert "likelihood" in separate.timings_ms


def test_hybrid_host_threads_work_in_a_forked_child() -> None:
    """A child forked after hybrid used its tokenising threads gets threads of its own (a copy of the parent's
    pool has none alive: work submitted to it would never run)."""
    import multiprocessing

    from ctxcompress.methods.hybrid import host_threads

    assert host_threads().submit(lambda: 1).result(timeout=10) == 1  # the parent's threads are running now
    child = multiprocessing.get_context("fork").Process(target=_submit_or_exit_1)
    child.start()
    child.join(30)
    assert child.exitcode == 0


def _submit_or_exit_1() -> None:
    import os

    from ctxcompress.methods.hybrid import host_threads

    try:
        ok = host_threads().submit(lambda: 41 + 1).result(timeout=10) == 42
    except Exception:
        ok = False
    os._exit(0 if ok else 1)


def test_the_pool_counts_the_probes_prefill_tokens_beside_the_scorers(tiny_compressor, tiny_scorer):
    """bench's model tokens/s and % of matmul peak: the attention method's LM work is the probe's prefills, which
    do not pass through the scorer's counter; the pool adds both (real tokens, not the padding)."""
    pool = tiny_compressor.pool
    probe = pool.attention("smollm2-135m")
    before, scorer_before = pool.model_tokens(), tiny_scorer.tokens_processed
    probe.window_attention([ObservedSequence(list(range(5, 65)), 50), ObservedSequence(list(range(7, 27)), 12)])
    assert probe.tokens_processed == 80  # 60 + 20 ids; the shorter row's padding is not counted
    assert pool.model_tokens() - before == 80 and tiny_scorer.tokens_processed == scorer_before
    tiny_scorer.token_nll([[5, 6, 7, 8]])
    assert tiny_scorer.tokens_processed - scorer_before >= 4
    assert pool.model_tokens() - before == 80 + tiny_scorer.tokens_processed - scorer_before


def test_the_callers_host_work_runs_once_while_the_probes_pass_is_queued(tiny_scorer, rows, monkeypatch):
    """hybrid splits sentences in ``while_running``: called once, after the last pass is queued, before its
    read-back (the host works while the device runs it)."""
    from ctxcompress.methods.attention import sentence_attention

    probe = QuestionAttention(tiny_scorer.model, pad_id=tiny_scorer.pad_id)
    events: list[str] = []
    original = probe._pass
    monkeypatch.setattr(probe, "_pass", lambda *a: (events.append("pass"), original(*a))[1])
    docs = nq_documents(rows[0])[:4]
    sentence_attention(
        tiny_scorer, probe, [(docs, rows[0]["question"])], per_document=True, sentences=False,
        chunk_tokens=64, while_running=lambda: events.append("host"),
    )  # fmt: skip
    assert events.count("host") == 1 and events[-1] == "host" and events.count("pass") >= 1
