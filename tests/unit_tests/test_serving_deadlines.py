"""Deadlines hold under overload: admitted requests are served, the rest get 429 at once, nobody gets a 504.

The compressor runs the tiny model for real and then spends a fixed time per origin token, like a slow device
(on 2 CPU cores the real SmolLM2 costs ~13 ms per token with LongLLMLingua), so the deadline binds within
seconds and the test is deterministic.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from ctxcompress import CompressionResult, CompressionTimeout, Compressor, Overloaded
from ctxcompress.pool import ModelPool
from ctxcompress.serving import AsyncCompressionEngine, ServingOptions
from ctxcompress.serving.cost import CostModel, ForecastError

DOCS = [
    "The Nile is a major north-flowing river in northeastern Africa and flows into the Mediterranean Sea.",
    "Paris is the capital and most populous city of France, on the river Seine.",
    "The Amazon in South America is the largest river by discharge volume of water in the world.",
]
SECONDS_PER_TOKEN = 0.004


def request(i: int) -> dict:
    return {"method": "llmlingua", "documents": [f"{d} Item {i}." for d in DOCS], "budget": {"rate": 0.5}}


class SlowDeviceCompressor(Compressor):
    """A real Compressor on a device that costs ``seconds_per_token`` per origin token of each batch."""

    def __init__(self, pool: ModelPool, seconds_per_token: float) -> None:
        super().__init__(pool=pool)
        self.seconds_per_token = seconds_per_token

    def compress_prepared(self, prepared, *, return_exceptions=False):  # noqa: ANN001, ANN201
        tokens = sum(p.origin_tokens for p in prepared if not isinstance(p, Exception))
        time.sleep(tokens * self.seconds_per_token)
        return super().compress_prepared(prepared, return_exceptions=return_exceptions)


@pytest.fixture()
def slow(tiny_scorer) -> SlowDeviceCompressor:  # noqa: ANN001
    pool = ModelPool(device="cpu")
    pool.register("scorer", "smollm2-135m", tiny_scorer)
    return SlowDeviceCompressor(pool, SECONDS_PER_TOKEN)


@pytest.mark.asyncio
async def test_overload_costs_the_newest_a_429_and_never_a_504(slow: SlowDeviceCompressor) -> None:
    timeout = 2.5
    engine = AsyncCompressionEngine([slow], options=ServingOptions(request_timeout_s=timeout, max_wait_ms=5))
    await engine.start()
    await engine.warmup([request(0)])  # seeds the cost model, as the service does at start-up
    per_request = slow.prepare(request(1)).origin_tokens * SECONDS_PER_TOKEN
    assert per_request > 0.2  # the deadline binds after a handful of requests

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(engine.compress(request(i)) for i in range(30)), return_exceptions=True)
    elapsed = time.perf_counter() - started

    served = [o for o in outcomes if isinstance(o, CompressionResult)]
    refused = [o for o in outcomes if isinstance(o, Overloaded)]
    assert not [o for o in outcomes if isinstance(o, CompressionTimeout)]
    assert len(served) + len(refused) == 30, [type(o).__name__ for o in outcomes]
    assert 2 <= len(served) <= timeout / per_request + 1
    assert all(1 <= o.retry_after_s <= timeout + 1 for o in refused)
    assert elapsed < timeout + 0.5
    assert engine.stats().rejected_total == len(refused)
    await engine.shutdown()


@pytest.mark.asyncio
async def test_a_batch_stops_growing_before_its_tightest_member_is_late(slow: SlowDeviceCompressor) -> None:
    engine = AsyncCompressionEngine(
        [slow], options=ServingOptions(request_timeout_s=30, max_wait_ms=50, batches_per_device=1)
    )
    await engine.start()
    await engine.warmup([request(0)])
    per_request = slow.prepare(request(1)).origin_tokens * SECONDS_PER_TOKEN
    tight = asyncio.create_task(engine.compress(request(1), timeout_s=per_request * 3))
    relaxed = [asyncio.create_task(engine.compress(request(i))) for i in range(2, 8)]
    outcomes = await asyncio.gather(tight, *relaxed, return_exceptions=True)
    assert all(isinstance(o, CompressionResult) for o in outcomes), outcomes
    assert max(engine.stats().batch_sizes) < 7  # the tight request's batch did not take all seven
    await engine.shutdown()


def test_cost_model_learns_per_method_rates_and_borrows_the_largest_for_unknown_methods() -> None:
    cost = CostModel(smoothing=0.5)
    assert cost.estimate("cpc", 100) == 0.0  # nothing measured: nothing refused
    cost.observe([("llmlingua", 100)], 1.0)
    assert cost.rate("llmlingua") == pytest.approx(0.01)
    assert cost.estimate("cpc", 100) == pytest.approx(1.0)  # unmeasured: the largest known rate
    cost.observe([("cpc", 100)], 0.1)
    assert cost.rate("cpc") == pytest.approx(0.001)
    cost.observe([("llmlingua", 100), ("cpc", 100)], 2.2)  # predicted 1.1 s, took twice as long
    assert cost.rate("llmlingua") == pytest.approx(0.015)
    assert cost.rate("cpc") == pytest.approx(0.0015)


def test_forecast_error_is_a_high_quantile_of_recent_overruns() -> None:
    error = ForecastError(window=100, quantile=0.95, min_forecast_s=0.5, max_factor=3.0)
    assert error.factor == 1.0  # nothing observed: forecasts as they are
    error.observe(0.1, 5.0)  # a short forecast is fixed overhead, not queueing: ignored
    assert error.factor == 1.0
    for i in range(100):
        error.observe(2.0, 2.0 * (1.5 if i % 10 == 0 else 0.9))  # one in ten ran 1.5x its forecast
    assert error.factor == pytest.approx(1.5)
    for _ in range(100):  # the window forgets the old overruns
        error.observe(2.0, 1.0)
    assert error.factor == 1.0  # never below 1: early finishes do not admit more than the forecast allows
    for _ in range(10):
        error.observe(1.0, 10.0)
    assert error.factor == 3.0  # bounded: one stalled batch does not close admission for long


@pytest.mark.asyncio
async def test_admission_scales_forecasts_by_the_observed_overrun(slow: SlowDeviceCompressor) -> None:
    """Requests recently finished at twice their forecast (what the cost model cannot see: other processes on
    the GPU, the GIL): admission keeps half the backlog, so the same burst gets fewer in and no 504."""
    timeout = 2.5
    engine = AsyncCompressionEngine([slow], options=ServingOptions(request_timeout_s=timeout, max_wait_ms=5))
    await engine.start()
    await engine.warmup([request(0)])
    per_request = slow.prepare(request(1)).origin_tokens * SECONDS_PER_TOKEN
    for _ in range(20):
        engine._forecast_error.observe(1.0, 2.0)
    assert engine.stats().forecast_overrun == pytest.approx(2.0)
    outcomes = await asyncio.gather(*(engine.compress(request(i)) for i in range(30)), return_exceptions=True)
    served = [o for o in outcomes if isinstance(o, CompressionResult)]
    refused = [o for o in outcomes if isinstance(o, Overloaded)]
    assert len(served) + len(refused) == 30, [type(o).__name__ for o in outcomes]
    # backlog admitted: forecast x 2 <= 0.8 x deadline (the factor may fall as fast requests report in)
    assert 1 <= len(served) <= 0.8 * timeout / per_request / 2 + 2
    assert all(o.retry_after_s >= 1 for o in refused)
    await engine.shutdown()
