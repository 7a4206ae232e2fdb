"""The recurring-chunk cache: bounded LRU, counters, and encoder outputs identical with and without it."""

from __future__ import annotations

import numpy as np
import pytest

from ctxcompress.engines import chunk_cache
from ctxcompress.engines.chunk_cache import ChunkCache, text_key
from ctxcompress.engines.encoder import SentenceEncoder
from ctxcompress.text.sentences import split_sentences_with_spans
from tests.conftest import nq_documents, nq_rows


def test_lru_bound_counters_and_off() -> None:
    cache = ChunkCache(10, size_of=len)
    cache.put("a", "xxxx")
    cache.put("b", "yyyy")
    assert cache.get("a") == "xxxx"  # a is now the most recent
    cache.put("c", "zzzz")  # 12 bytes > 10: the least recently used (b) goes
    assert cache.get("b") is None and cache.get("c") == "zzzz"
    cache.put("huge", "q" * 11)  # larger than the whole cache: not kept
    assert cache.get("huge") is None
    totals = cache.totals()
    assert (totals.hits, totals.misses, totals.evictions, totals.bytes, totals.entries) == (2, 2, 1, 8, 2)
    off = ChunkCache(0, size_of=len)
    off.put("a", "x")
    assert off.get("a") is None and off.totals().misses == 0
    assert chunk_cache.totals().hits >= 2  # summed over the process's caches
    cache.clear()
    assert cache.get("a") is None and cache.totals().bytes == 0
    with pytest.raises(ValueError):
        ChunkCache(-1, size_of=len)


def test_keys_separate_texts_and_parameters() -> None:
    assert text_key("a", 64) == text_key("a", 64)
    assert text_key("a", 64) != text_key("b", 64) != text_key("a", 32)
    assert text_key("\ud800 lone surrogate", 1)  # any str hashes


def test_cached_span_embeddings_equal_fresh_ones(tiny_encoder: SentenceEncoder) -> None:
    docs = nq_documents(nq_rows(1, gold=4)[0])[:6]
    cached = SentenceEncoder(tiny_encoder.model, max_pass_tokens=2048, cache_bytes=2**26)
    cached.max_length = tiny_encoder.max_length
    spans = {text: split_sentences_with_spans(text) for text in [*docs, "Where is the Nile?"]}
    first = cached.span_embeddings(docs[:4], [spans[d] for d in docs[:4]])  # computed in one batch together
    texts = [docs[5], docs[2], "Where is the Nile?", docs[0]]
    again = cached.span_embeddings(texts, [spans[t] for t in texts])  # two from the cache
    assert cached.cache.totals().hits == 2 and cached.cache.totals().misses == 6
    for got, text in zip(again, texts, strict=True):
        alone = tiny_encoder.span_embeddings([text], [spans[text]])[0]  # no cache, computed alone
        np.testing.assert_allclose(got.spans, alone.spans, rtol=0, atol=1e-5)  # batch-mates: rounding only
        np.testing.assert_allclose(got.pooled, alone.pooled, rtol=0, atol=1e-5)
    assert again[1] is first[2] and not again[1].spans.flags.writeable  # shared, so read-only
    other = cached.span_embeddings([docs[0]], [spans[docs[0]][:1]])  # other spans: a miss, then its entry
    assert other[0].spans.shape[0] == 1 and cached.cache.totals().misses == 7


def test_span_embeddings_queued_before_their_spans_are_known_equal_the_direct_call(tiny_encoder) -> None:
    """``queue_span_embeddings`` (hybrid queues the pass, then splits sentences while the device runs it): spans
    given late pool the same vectors. A text queued without spans is looked up under the spans it was last pooled
    for: served so when its spans turn out the same, computed at collect when they do not."""
    docs = nq_documents(nq_rows(1, gold=4)[0])[:5]
    spans = [split_sentences_with_spans(d) for d in docs]
    encoder = SentenceEncoder(tiny_encoder.model, max_pass_tokens=2048, cache_bytes=2**26)
    encoder.max_length = tiny_encoder.max_length
    first = encoder.span_embeddings(docs[:3], spans[:3])  # docs 0-2 cached
    late = [spans[0], spans[1], spans[2][:1], spans[3], spans[4]]  # doc 2 turns out split differently
    queued = encoder.queue_span_embeddings(docs, [spans[0], None, None, spans[3], None])
    assert encoder.cache.totals().hits == 5  # doc 0 by its spans; docs 1 and 2 by the spans last pooled (2 lookups)
    got = queued.collect(late)
    assert got[0] is first[0] and got[1] is first[1] and got[2] is not first[2]
    direct = tiny_encoder.span_embeddings(docs, late)  # no cache, one batch
    for a, b in zip(got, direct, strict=True):
        np.testing.assert_allclose(a.spans, b.spans, rtol=0, atol=1e-5)
        np.testing.assert_allclose(a.pooled, b.pooled, rtol=0, atol=1e-5)
    again = encoder.queue_span_embeddings(docs, late).collect(late)
    assert all(a is b for a, b in zip(again, got, strict=True))  # every one cached under its spans


def test_the_service_reports_cache_hits(tiny_encoder: SentenceEncoder) -> None:
    import httpx
    from ctxcompress_service import Settings, build_app, build_engine
    from ctxcompress_service.testing import ServiceThread

    from ctxcompress import Compressor
    from ctxcompress.pool import ModelPool

    encoder = SentenceEncoder(tiny_encoder.model, max_pass_tokens=2048, cache_bytes=2**26)
    pool = ModelPool(device="cpu")
    pool.register("encoder", "minilm-l6", encoder)
    settings = Settings(_env_file=None, device=["cpu"], preload_models=[], warmup=False)
    app = build_app(settings, engine_factory=lambda s: build_engine(s, [Compressor(pool=pool)]))
    docs = nq_documents(nq_rows(1, gold=4)[0])[:5]

    def hits() -> float:
        scraped = httpx.get(f"{service.url}/metrics").text
        return float(
            next(
                line.split()[-1]
                for line in scraped.splitlines()
                if line.startswith("ctxcompress_chunk_cache_hits_total")
            )
        )

    with ServiceThread(app) as service:
        body = {"method": "cpc", "documents": docs, "question": "who wrote it?", "budget": {"rate": 0.5}}
        first = httpx.post(f"{service.url}/v1/compress", json=body, timeout=60).json()
        before = hits()
        again = httpx.post(f"{service.url}/v1/compress", json=body | {"question": "when?"}, timeout=60)
        assert again.status_code == 200 and first["origin_tokens"] > 0
        assert hits() - before == 2 * len(docs)  # every document's embeddings and target-token count: cached


def test_scorer_token_cache_gives_the_tokenizer_output_and_counts_hits(tiny_scorer) -> None:
    from ctxcompress.engines.scorer import CausalLMScorer

    cached = CausalLMScorer(tiny_scorer.model, tiny_scorer.tokenizer, chunk_cache_mb=1)
    texts = [*nq_documents(nq_rows(1)[0])[:4], "", '你好。 emoji 🙂 {"json": [1, 2]}']
    first = cached.encode_batch(texts)
    assert first == tiny_scorer.encode_batch(texts)  # the uncached scorer (chunk_cache_mb=0)
    first[0][0].append(-1)  # callers own what they get: the cache keeps its own copy
    again = cached.encode_batch([texts[1], "new text", texts[0]])
    assert again[0] == tiny_scorer.encode(texts[1]) and again[2] == tiny_scorer.encode(texts[0])
    assert again[1] == tiny_scorer.encode("new text")
    totals = cached.token_cache.totals()
    assert (totals.hits, totals.misses, totals.entries) == (2, 7, 7)
    assert not tiny_scorer.token_cache.enabled


def test_sentence_units_are_cached_per_text_and_language() -> None:
    from ctxcompress.methods import _units

    text = "Document [1](Title: X) Dr. Smith came at 3 p.m. on Jan. 5. He left. 你好。世界。"
    before = _units._unit_cache.totals()
    first = _units.sentence_units(text, "english")
    first[1].append((0, 0))  # the caller's copy
    second = _units.sentence_units(text, "english")
    after = _units._unit_cache.totals()
    assert second[1] == first[1][:-1] and after.hits == before.hits + 1
    end = _units.header_end(text)
    assert second == (end, [(s + end, e + end) for s, e in split_sentences_with_spans(text[end:], "english")])
    _units.sentence_units(text, "german")  # another key
    assert _units._unit_cache.totals().misses == after.misses + 1
