"""CostModel: how many device seconds a queued request will take, learned from the batches that ran.

The engine uses it to keep deadlines: a request whose wait (the estimated work queued and running ahead of it)
plus its own estimated run time exceeds its deadline is refused at admission (429 with a ``Retry-After`` equal
to that wait) instead of being accepted and timed out, and a batch stops growing once its estimated run time
would make its tightest member late.

Model: seconds = tokens x seconds-per-token of the request's method, per engine (devices of one engine are
alike). After each batch the rates of the methods in it are scaled by actual / predicted seconds (an
exponential moving average), so the figures follow the device, the batch sizes it sees and the load. A method
never measured borrows the largest rate measured so far (conservative); before any measurement nothing is
refused.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CostModel"]


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
