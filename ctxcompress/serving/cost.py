"""CostModel: how many device seconds a queued request will take, learned from the batches that ran; and
ForecastError: how far the completion times of admitted requests overran the forecast that admitted them.

The engine uses it to keep deadlines: a request whose wait (the estimated work queued and running ahead of it)
plus its own estimated run time exceeds its deadline is refused at admission (429 with a ``Retry-After`` equal
to that wait) instead of being accepted and timed out, and a batch stops growing once its estimated run time
would make its tightest member late.

Model: seconds = tokens x seconds-per-token of the request's method, per engine (devices of one engine are
alike). After each batch the rates of the methods in it are scaled by actual / predicted seconds (an
exponential moving average), so the figures follow the device, the batch sizes it sees and the load. A method
never measured borrows the largest rate measured so far (conservative); before any measurement nothing is
refused.

The cost model sees only its own process's batches. What it cannot see (other server processes sharing the GPU,
the worker thread holding the GIL while the event loop waits, variance between batches) makes a request admitted
with a forecast just under its deadline finish after it. :class:`ForecastError` measures that: a high quantile of
actual / forecast over the recent requests whose forecast was long enough to be mostly queueing, which the engine
multiplies forecasts by before comparing them with the deadline (feedback on the observed error, as admission
controllers that target a latency do, e.g. CoDel's use of measured sojourn time rather than queue length).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable

__all__ = ["CostModel", "ForecastError"]


class CostModel:
    """Per-method seconds per origin token (target tokenizer), updated from measured batches.

    Args:
        smoothing: weight of the newest batch in the moving average (0-1).
    """

    def __init__(self, smoothing: float = 0.3) -> None:
        if not 0 < smoothing <= 1:
            raise ValueError("smoothing must be in (0, 1]")
        self.smoothing = smoothing
        self._per_token: dict[str, float] = {}

    def rate(self, method: str) -> float:
        """Seconds per token of ``method`` (the largest known rate if unmeasured; 0 before any measurement)."""
        if method in self._per_token:
            return self._per_token[method]
        return max(self._per_token.values(), default=0.0)

    def estimate(self, method: str, tokens: int) -> float:
        return self.rate(method) * max(tokens, 1)

    def observe(self, work: Iterable[tuple[str, int]], seconds: float) -> None:
        """Record that a batch of ``(method, tokens)`` items took ``seconds``."""
        items = list(work)
        total = sum(max(t, 1) for _, t in items)
        if not items or seconds <= 0:
            return
        predicted = sum(self.estimate(m, t) for m, t in items)
        for method in {m for m, _ in items}:
            if method not in self._per_token or predicted <= 0:
                # First sight of a method (or of any cost): the batch's average rate is the best guess.
                measured = seconds / total
            else:
                measured = self._per_token[method] * seconds / predicted
            old = self._per_token.get(method)
            self._per_token[method] = (
                measured if old is None else (1 - self.smoothing) * old + self.smoothing * measured
            )

    def known(self) -> dict[str, float]:
        return dict(self._per_token)


class ForecastError:
    """A rolling high quantile of ``actual / forecast`` completion time of admitted requests (at least 1.0).

    Args:
        window: the most recent observations kept.
        quantile: which quantile of them :attr:`factor` is (0.99: about 1 in 100 admitted requests may still
            overrun a forecast scaled by it).
        min_forecast_s: shorter forecasts are not observed: their ratio is fixed overhead, not queueing, and
            admission only matters near the deadline.
        max_factor: upper bound of :attr:`factor` (one stalled batch must not close admission for long).
    """

    def __init__(
        self, window: int = 256, quantile: float = 0.99, min_forecast_s: float = 0.5, max_factor: float = 4.0
    ) -> None:
        if window < 1 or not 0 < quantile <= 1 or min_forecast_s <= 0 or max_factor < 1:
            raise ValueError("window >= 1, 0 < quantile <= 1, min_forecast_s > 0 and max_factor >= 1")
        self.quantile = quantile
        self.min_forecast_s = min_forecast_s
        self.max_factor = max_factor
        self._recent: deque[float] = deque(maxlen=window)
        self._sorted: list[float] = []
        self.factor = 1.0

    def observe(self, forecast_s: float, actual_s: float) -> None:
        """A request admitted with ``forecast_s`` finished (or timed out) ``actual_s`` after admission."""
        if forecast_s < self.min_forecast_s:
            return
        ratio = actual_s / forecast_s
        if len(self._recent) == self._recent.maxlen:
            del self._sorted[bisect.bisect_left(self._sorted, self._recent[0])]
        self._recent.append(ratio)
        bisect.insort(self._sorted, ratio)
        index = min(len(self._sorted) - 1, math.ceil(self.quantile * len(self._sorted)) - 1)
        self.factor = min(self.max_factor, max(1.0, self._sorted[index]))
