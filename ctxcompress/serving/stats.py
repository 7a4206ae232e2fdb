"""Counters the engine keeps for metrics: batch sizes, batch latency, queue depth (read at scrape time)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["BATCH_SIZE_BUCKETS", "EngineStats"]

BATCH_SIZE_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class EngineStats:
    """A snapshot of the engine's state and cumulative counters.

    ``batch_sizes`` maps a batch size (requests handed to one ``compress_batch`` call) to how many batches had
    that size; :meth:`batch_size_buckets` turns it into cumulative histogram buckets.
    """

    queue_depth: int = 0
    in_flight: int = 0
    running_batches: int = 0
    max_concurrent_requests: int = 0
    devices: list[str] = field(default_factory=list)
    requests_total: int = 0
    dropped_total: int = 0
    timeouts_total: int = 0
    rejected_total: int = 0
    batches_total: int = 0
    batch_seconds_sum: float = 0.0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    chunk_cache_hits_total: int = 0
    chunk_cache_misses_total: int = 0
    chunk_cache_bytes: int = 0
    forecast_overrun: float = 1.0  # admission's factor on completion forecasts (serving/cost.py ForecastError)

    def batch_size_buckets(self) -> list[tuple[float, int]]:
        """Cumulative ``(upper bound, count)`` pairs ending with ``+inf``, Prometheus style."""
        out: list[tuple[float, int]] = []
        for bound in BATCH_SIZE_BUCKETS:
            out.append((float(bound), sum(n for size, n in self.batch_sizes.items() if size <= bound)))
        out.append((float("inf"), sum(self.batch_sizes.values())))
        return out

    def mean_batch_size(self) -> float:
        total = sum(self.batch_sizes.values())
        return sum(size * n for size, n in self.batch_sizes.items()) / total if total else 0.0
