"""The profile batch (``ctxcompress/serving/profile_batch.py``): the serving limits' largest batch, run once per GPU
at start-up so the memory peak is reserved before the service is ready."""

from __future__ import annotations

import pytest

from ctxcompress import Compressor
from ctxcompress.pool import ModelPool
from ctxcompress.serving import AsyncCompressionEngine, ServingOptions
from ctxcompress.serving import engine as engine_module
from ctxcompress.serving.profile_batch import profile_batch

WARMUP = {"method": "llmlingua", "documents": ["The Nile flows into the Mediterranean Sea."], "question": "Where?"}


class RecordingCompressor(Compressor):
    """A real Compressor that remembers the batches it ran."""

    def __init__(self, pool: ModelPool) -> None:
        super().__init__(pool=pool)
        self.batches: list[list[dict]] = []

    def compress_batch(self, requests, *, return_exceptions=False):  # noqa: ANN001, ANN201
        self.batches.append(list(requests))
        return super().compress_batch(requests, return_exceptions=return_exceptions)


@pytest.fixture()
def recording(tiny_compressor: Compressor) -> RecordingCompressor:
    return RecordingCompressor(tiny_compressor.pool)  # conftest's pool: the tiny scorer as smollm2-135m


def test_the_batch_fills_the_token_limit_with_distinct_retrieval_sized_requests(recording: RecordingCompressor) -> None:
    def count(request: dict) -> int:
        return recording.prepare(request).origin_tokens

    batch = profile_batch("llmlingua", requests=32, tokens=20_000, count_tokens=count)
    assert 5 <= len(batch) <= 7  # the tokens run out before the request count: ~3,000 tokens each
    assert all(len(r["documents"]) == 20 for r in batch)
    for request in batch:  # one long passage per request: the rows of a pass pad to it, as with real passages
        lengths = sorted(len(d) for d in request["documents"])
        assert len(request["documents"][0]) == lengths[-1] >= 3 * lengths[len(lengths) // 2]
    documents = [d for request in batch for d in request["documents"]]
    assert len(set(documents)) == len(documents)  # no chunk-cache hits
    assert 0.8 * 20_000 <= sum(count(r) for r in batch) <= 20_000
    assert 2_500 <= count(batch[0]) <= 3_500
    assert batch == profile_batch("llmlingua", requests=32, tokens=20_000, count_tokens=count)  # deterministic
    few = profile_batch("llmlingua", requests=3, tokens=20_000, count_tokens=count)
    assert len(few) == 3  # the request limit binds first
    small = profile_batch("llmlingua", requests=4, tokens=1000, count_tokens=count)
    assert len(small) == 1 and sum(count(r) for r in small) <= 1000  # one shorter request where 20 would not fit


@pytest.mark.asyncio
@pytest.mark.parametrize("gpu", [True, False])
async def test_warmup_runs_the_profile_batch_where_memory_is_kept(
    recording: RecordingCompressor, monkeypatch: pytest.MonkeyPatch, gpu: bool
) -> None:
    """On a CUDA device (here the CPU posing as one) the warm-up ends with one batch at the limits and the method
    asked for; on CPU it does not (the heap is trimmed there; the batch would only cost time)."""
    monkeypatch.setattr(engine_module, "_reserves_memory", lambda device: gpu)
    options = ServingOptions(max_batch_requests=4, max_batch_tokens=10_500)
    engine = AsyncCompressionEngine([recording], options=options)
    await engine.start()
    await engine.warmup([WARMUP], profile_method="llmlingua")
    await engine.warmup([WARMUP])
    await engine.shutdown()
    sizes = [len(batch) for batch in recording.batches]
    assert sizes == ([1, 1, 3, 1, 1] if gpu else [1, 1, 1, 1])  # 3 requests of ~3,000 tokens fill 10,500
    if gpu:
        profile = recording.batches[2]
        assert {r["method"] for r in profile} == {"llmlingua"}
        assert sum(recording.prepare(r).origin_tokens for r in profile) <= options.max_batch_tokens
