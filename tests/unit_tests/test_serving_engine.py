"""AsyncCompressionEngine: batching across callers, admission, timeouts, cancellation, drain, data parallel.

The compressors run the tiny random model; a gate (a threading.Event the worker waits on before running the
real ``compress_batch``) holds a batch on its device so queue states are deterministic.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from ctxcompress import CompressionResult, CompressionTimeout, Compressor, InvalidInput, Overloaded, UnknownModel
from ctxcompress.errors import EngineUnavailable
from ctxcompress.pool import ModelPool
from ctxcompress.serving import AsyncCompressionEngine, ServingOptions

pytestmark = pytest.mark.asyncio

DOCS = [
    "The Nile is a major north-flowing river in northeastern Africa and flows into the Mediterranean Sea.",
    "Paris is the capital and most populous city of France, on the river Seine.",
    "The Amazon in South America is the largest river by discharge volume of water in the world.",
]


def request(i: int = 0, **overrides: object) -> dict:
    body = {"method": "llmlingua", "documents": [f"{d} Item {i}." for d in DOCS], "budget": {"rate": 0.5}}
    return body | overrides


class GatedCompressor(Compressor):
    """A real Compressor whose worker waits for ``gate`` before each batch and records batch sizes."""

    def __init__(self, pool: ModelPool) -> None:
        super().__init__(pool=pool)
        self.gate = threading.Event()
        self.gate.set()
        self.batch_sizes: list[int] = []
        self.entered = threading.Event()

    def compress_prepared(self, prepared, *, return_exceptions=False):  # noqa: ANN001, ANN201
        self.entered.set()
        assert self.gate.wait(30)
        self.batch_sizes.append(len(prepared))
        return super().compress_prepared(prepared, return_exceptions=return_exceptions)


@pytest.fixture()
def gated(tiny_scorer) -> GatedCompressor:  # noqa: ANN001
    pool = ModelPool(device="cpu")
    pool.register("scorer", "smollm2-135m", tiny_scorer)
    return GatedCompressor(pool)


async def _hold(engine: AsyncCompressionEngine, gated: GatedCompressor) -> asyncio.Task:
    """Start one request and wait until its batch is on the device, blocked at the gate."""
    gated.gate.clear()
    gated.entered.clear()
    task = asyncio.create_task(engine.compress(request(99)))
    while not gated.entered.is_set():
        await asyncio.sleep(0.005)
    return task


async def test_requests_arriving_while_the_device_is_busy_share_the_next_batch(gated: GatedCompressor) -> None:
    engine = AsyncCompressionEngine([gated])
    await engine.start()
    first = await _hold(engine, gated)
    waiting = [asyncio.create_task(engine.compress(request(i))) for i in range(6)]
    await asyncio.sleep(0.05)
    later = [asyncio.create_task(engine.compress(request(10 + i))) for i in range(3)]
    await asyncio.sleep(0.05)  # all nine joined the open batch behind the running one: nothing left queued
    assert engine.stats().queue_depth == 0 and engine.stats().running_batches == 2
    gated.gate.set()
    results = await asyncio.gather(first, *waiting, *later)
    assert all(isinstance(r, CompressionResult) and r.compressed_tokens <= r.target_tokens for r in results)
    assert gated.batch_sizes == [1, 9]
    stats = engine.stats()
    assert stats.batches_total == 2 and stats.batch_sizes == {1: 1, 9: 1}
    assert stats.queue_depth == 0 and stats.in_flight == 0
    await engine.shutdown()


async def test_a_full_open_batch_leaves_the_rest_queued_for_the_next_slot(gated: GatedCompressor) -> None:
    engine = AsyncCompressionEngine([gated], options=ServingOptions(max_batch_requests=4))
    await engine.start()
    first = await _hold(engine, gated)
    waiting = [asyncio.create_task(engine.compress(request(i))) for i in range(7)]
    await asyncio.sleep(0.05)  # four fill the open batch; the other three wait for a device slot
    assert engine.stats().queue_depth == 3 and engine.stats().running_batches == 2
    gated.gate.set()
    await asyncio.gather(first, *waiting)
    assert gated.batch_sizes == [1, 4, 3]
    await engine.shutdown()


async def test_an_idle_device_waits_max_wait_ms_for_more_requests(gated: GatedCompressor) -> None:
    engine = AsyncCompressionEngine([gated], options=ServingOptions(max_wait_ms=300))
    await engine.start()
    first = asyncio.create_task(engine.compress(request(0)))
    await asyncio.sleep(0.05)
    assert gated.batch_sizes == []  # not started yet: the device waits for company
    second = asyncio.create_task(engine.compress(request(1)))
    await asyncio.gather(first, second)
    assert gated.batch_sizes == [2]
    await engine.shutdown()


async def test_overload_is_rejected_at_once_with_retry_after(gated: GatedCompressor) -> None:
    engine = AsyncCompressionEngine([gated], options=ServingOptions(max_concurrent_requests=2))
    await engine.start()
    first = await _hold(engine, gated)
    second = asyncio.create_task(engine.compress(request(1)))
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded) as info:
        await engine.compress(request(2))
    assert info.value.retry_after_s >= 1
    with pytest.raises(Overloaded):  # a batch takes one permit per request, all or none
        await engine.compress_many([request(3)])
    assert engine.stats().rejected_total == 2
    gated.gate.set()
    await asyncio.gather(first, second)
    assert isinstance(await engine.compress(request(4)), CompressionResult)  # permits came back
    await engine.shutdown()


async def test_validation_fails_at_admission_without_a_batch(gated: GatedCompressor) -> None:
    engine = AsyncCompressionEngine([gated])
    await engine.start()
    with pytest.raises(InvalidInput) as info:
        await engine.compress(request(options={"windw": 10}))
    assert info.value.field == "options.windw"
    with pytest.raises(InvalidInput) as info:
        await engine.compress(request(documents=["  "]))
    assert info.value.field == "documents"
    results = await engine.compress_many([request(0), request(1, method="nope")])
    assert isinstance(results[0], CompressionResult)
    assert isinstance(results[1], InvalidInput) and results[1].field == "method"
    assert gated.batch_sizes == [1]
    await engine.shutdown()


async def test_within_budget_returns_without_a_batch(gated: GatedCompressor) -> None:
    engine = AsyncCompressionEngine([gated])
    await engine.start()
    result = await engine.compress(request(budget={"rate": 1.0}))
    assert result.ratio == 1.0 and [d.index for d in result.documents] == [0, 1, 2]
    assert gated.batch_sizes == []
    await engine.shutdown()


async def test_timeout_and_cancelled_callers_are_dropped_unrun(gated: GatedCompressor) -> None:
    engine = AsyncCompressionEngine([gated], options=ServingOptions(max_wait_ms=1))
    await engine.start()
    first = await _hold(engine, gated)
    # A second batch opens behind the running one; the later requests join it and lose their callers there.
    prefetched = asyncio.create_task(engine.compress(request(1)))
    await asyncio.sleep(0.05)
    with pytest.raises(CompressionTimeout):
        await engine.compress(request(2), timeout_s=0.1)
    gone = asyncio.create_task(engine.compress(request(3)))
    await asyncio.sleep(0.02)
    gone.cancel()
    gated.gate.set()
    await asyncio.gather(first, prefetched)
    with pytest.raises(asyncio.CancelledError):
        await gone
    stats = engine.stats()
    assert stats.timeouts_total == 1 and stats.dropped_total == 2
    assert sum(gated.batch_sizes) == 2  # neither the expired nor the cancelled request ran
    await engine.shutdown()


async def test_shutdown_drains_accepted_requests(gated: GatedCompressor) -> None:
    engine = AsyncCompressionEngine([gated])
    await engine.start()
    first = await _hold(engine, gated)
    queued = [asyncio.create_task(engine.compress(request(i))) for i in range(3)]
    await asyncio.sleep(0.02)
    stopping = asyncio.create_task(engine.shutdown(drain=True))
    await asyncio.sleep(0.02)
    with pytest.raises(EngineUnavailable):
        await engine.compress(request(5))
    with pytest.raises(EngineUnavailable):
        engine.check_health()
    gated.gate.set()
    results = await asyncio.gather(first, *queued)
    await stopping
    assert all(isinstance(r, CompressionResult) for r in results)


async def test_token_cap_splits_batches(gated: GatedCompressor) -> None:
    engine = AsyncCompressionEngine(
        [gated], options=ServingOptions(max_batch_tokens=80)
    )  # one request is ~60 target tokens
    await engine.start()
    first = await _hold(engine, gated)
    queued = [asyncio.create_task(engine.compress(request(i))) for i in range(3)]
    await asyncio.sleep(0.02)
    gated.gate.set()
    await asyncio.gather(first, *queued)
    assert gated.batch_sizes == [1, 1, 1, 1]
    await engine.shutdown()


async def test_one_bad_model_name_does_not_fail_its_batch(gated: GatedCompressor) -> None:
    engine = AsyncCompressionEngine([gated])
    await engine.start()
    first = await _hold(engine, gated)
    bad = request(1, options={"scorer": "no-such-model"})
    queued = [asyncio.create_task(engine.compress_many([request(0), bad, request(2)]))]
    await asyncio.sleep(0.02)
    gated.gate.set()
    await first
    good0, error, good2 = (await asyncio.gather(*queued))[0]
    assert isinstance(good0, CompressionResult) and isinstance(good2, CompressionResult)
    assert isinstance(error, UnknownModel)
    await engine.shutdown()


async def test_batches_spread_over_devices(tiny_scorer) -> None:  # noqa: ANN001
    compressors = []
    for _ in range(2):
        pool = ModelPool(device="cpu")
        pool.register("scorer", "smollm2-135m", tiny_scorer)
        compressors.append(GatedCompressor(pool))
    for c in compressors:
        c.gate.clear()
    engine = AsyncCompressionEngine(compressors, options=ServingOptions(max_batch_requests=1, max_wait_ms=0))
    await engine.start()
    tasks = [asyncio.create_task(engine.compress(request(i))) for i in range(4)]
    await asyncio.sleep(0.1)
    assert engine.stats().running_batches == 4  # two per device: one running, one open behind it
    for c in compressors:
        c.gate.set()
    await asyncio.gather(*tasks)
    assert [len(c.batch_sizes) for c in compressors] == [2, 2]
    await engine.shutdown()


@pytest.mark.asyncio
async def test_preload_loads_every_kind_of_model_by_its_loader() -> None:
    """``PRELOAD_MODELS`` names any kind: the default method's sentence encoder is loaded at start-up too (it was
    skipped with a warning, so the first request paid its load). The embedded MiniLM is small and needs no
    conversion."""
    engine = AsyncCompressionEngine([Compressor(device="cpu")])
    await engine.start()
    await engine.load_models(["minilm-l6"])
    assert engine.loaded() == ["encoder:minilm-l6"]
    with pytest.raises(UnknownModel):
        await engine.load_models(["no-such-model"])
    await engine.shutdown()


async def test_each_request_is_prepared_once(gated: GatedCompressor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Admission validates and counts a request (``prepare``: the origin prompt through the target tokenizer); the
    worker runs that prepared request as it is instead of preparing it again."""
    calls: list[int] = []
    prepare = gated.prepare
    monkeypatch.setattr(gated, "prepare", lambda r: calls.append(1) or prepare(r))
    engine = AsyncCompressionEngine([gated])
    await engine.start()
    results = await asyncio.gather(*(engine.compress(request(i)) for i in range(3)))
    assert all(isinstance(r, CompressionResult) for r in results)
    assert len(calls) == 3
    await engine.shutdown()
