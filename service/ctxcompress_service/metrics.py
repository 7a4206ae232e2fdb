"""Prometheus metrics, one truth across ``serve --workers N`` processes.

HTTP counters and latencies are recorded as requests finish; the engine's state (queue depth, batch sizes,
counters) is copied into ordinary Prometheus metrics by :meth:`Metrics.sync`: at every scrape and, with several
workers, once a second in each process. With several workers the serve command sets
``PROMETHEUS_MULTIPROC_DIR``; every process then writes its values to files there and a scrape answered by any
worker sums all of them (prometheus-client's multiprocess mode: counters and histograms summed, gauges summed over
live processes), so counters never jump between processes.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from ctxcompress.serving.protocol import EngineClient
from ctxcompress.serving.stats import BATCH_SIZE_BUCKETS, EngineStats
from ctxcompress.types import CompressionResult
from ctxcompress_service.keys import ANONYMOUS

__all__ = ["STARTED_AT_ENV", "Metrics", "multiprocess_dir"]

STARTED_AT_ENV = "CTXCOMPRESS_STARTED_AT"
"""Set by ``serve --workers N``: the Unix time the service started, shared by its worker processes."""

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def multiprocess_dir() -> str | None:
    """The folder of prometheus-client's multiprocess mode, when the serve command set one."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The service's metrics; ``engine_getter()`` returns the live engine (or None before startup)."""

    def __init__(self, engine_getter: Any) -> None:
        self._engine = engine_getter
        self.started_at = float(os.environ.get(STARTED_AT_ENV) or time.time())
        self.multiprocess = multiprocess_dir() is not None
        self.registry = CollectorRegistry()
        if self.multiprocess:  # values live in per-process files; the exposition registry reads all of them
            MultiProcessCollector(self.registry)
        own = None if self.multiprocess else self.registry

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, registry=own, multiprocess_mode="livesum")

        self.requests = Counter(
            "ctxcompress_http_requests", "HTTP requests", ["route", "method", "status"], registry=own
        )
        self.latency = Histogram(
            "ctxcompress_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=own,
        )
        self.tokens = Counter("ctxcompress_tokens", "target-tokenizer tokens", ["direction"], registry=own)
        self.key_requests = Counter("ctxcompress_key_requests", "POST requests per API key", ["key"], registry=own)
        self.key_tokens = Counter(
            "ctxcompress_key_tokens",
            "target-tokenizer tokens per API key and method (origin, compressed, saved)",
            ["key", "method", "direction"],
            registry=own,
        )
        self.key_compressions = Counter(
            "ctxcompress_key_compressions", "compressions per API key and method", ["key", "method"], registry=own
        )
        self.key_rejected = Counter(
            "ctxcompress_key_rejected", "requests refused as over the key's quota", ["key"], registry=own
        )
        self.queue_depth = gauge("ctxcompress_queue_depth", "requests waiting for a batch")
        self.in_flight = gauge("ctxcompress_in_flight_requests", "admitted requests")
        self.max_concurrent = gauge("ctxcompress_max_concurrent_requests", "admission bound")
        self.running_batches = gauge("ctxcompress_running_batches", "batches on devices")
        self.chunk_cache_bytes = gauge("ctxcompress_chunk_cache_bytes", "bytes held by the recurring-chunk caches")
        self.forecast_overrun = Gauge(
            "ctxcompress_forecast_overrun",
            "factor admission scales completion forecasts by (recent actual / forecast, high quantile; largest worker)",
            registry=own,
            multiprocess_mode="livemax",
        )
        self.engine_counters = {
            field: Counter(name, doc, registry=own)
            for field, name, doc in (
                ("requests_total", "ctxcompress_engine_requests", "requests submitted to the engine"),
                ("dropped_total", "ctxcompress_engine_dropped", "requests dropped unrun (caller gone or expired)"),
                ("timeouts_total", "ctxcompress_engine_timeouts", "requests that timed out"),
                ("rejected_total", "ctxcompress_engine_rejected", "requests rejected as overloaded"),
                ("batch_seconds_sum", "ctxcompress_batch_seconds", "time spent running batches"),
                ("chunk_cache_hits_total", "ctxcompress_chunk_cache_hits", "chunks whose work came from the cache"),
                ("chunk_cache_misses_total", "ctxcompress_chunk_cache_misses", "chunks computed (not cached yet)"),
            )
        }
        self.batch_size = Histogram(
            "ctxcompress_batch_size", "requests per compress_batch call", buckets=BATCH_SIZE_BUCKETS, registry=own
        )
        self._synced = EngineStats()  # what has been copied into the metrics so far
        self._sync_lock = threading.Lock()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_result(self, result: CompressionResult, key: str = ANONYMOUS) -> None:
        """One compression done for API key ``key`` (its name; ``anonymous`` without service keys)."""
        self.tokens.labels("origin").inc(result.origin_tokens)
        self.tokens.labels("compressed").inc(result.compressed_tokens)
        self.key_compressions.labels(key, result.method).inc()
        self.key_tokens.labels(key, result.method, "origin").inc(result.origin_tokens)
        self.key_tokens.labels(key, result.method, "compressed").inc(result.compressed_tokens)
        self.key_tokens.labels(key, result.method, "saved").inc(max(result.origin_tokens - result.compressed_tokens, 0))

    def savings(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per key name, per method: ``compressions`` and ``origin``/``compressed``/``saved`` tokens since start,
        summed over every worker process (read from the same registry as a scrape)."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for family in self.registry.collect():
            if family.name not in ("ctxcompress_key_tokens", "ctxcompress_key_compressions"):
                continue
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                labels = sample.labels
                field = labels.get("direction", "compressions")
                row = out.setdefault(labels["key"], {}).setdefault(labels["method"], {})
                row[field] = row.get(field, 0) + int(sample.value)
        return out

    def mean_in_flight(self) -> float | None:
        """With several worker processes: the mean of their admitted requests (the in-flight gauge's files of
        every process that has written one); ``None`` in a single process."""
        folder = multiprocess_dir()
        if folder is None:
            return None
        files = glob.glob(os.path.join(folder, "gauge_livesum_*.db"))
        if not files:
            return None
        for metric in MultiProcessCollector.merge(files, accumulate=False):
            if metric.name == "ctxcompress_in_flight_requests":
                return sum(sample.value for sample in metric.samples) / len(files)
        return None

    def sync(self) -> None:
        """Copy the engine's state into the metrics: gauges set, counters and the batch histogram advanced by what
        happened since the last sync."""
        engine: EngineClient | None = self._engine()
        if engine is None:
            return
        with self._sync_lock:
            stats, last = engine.stats(), self._synced
            self.queue_depth.set(stats.queue_depth)
            self.in_flight.set(stats.in_flight)
            self.max_concurrent.set(stats.max_concurrent_requests)
            self.running_batches.set(stats.running_batches)
            self.chunk_cache_bytes.set(stats.chunk_cache_bytes)
            self.forecast_overrun.set(stats.forecast_overrun)
            for field, counter in self.engine_counters.items():
                delta = getattr(stats, field) - getattr(last, field)
                if delta > 0:
                    counter.inc(delta)
            new_batches: Tally[int] = Tally(stats.batch_sizes)
            new_batches.subtract(last.batch_sizes)
            for size, n in new_batches.items():
                for _ in range(max(n, 0)):
                    self.batch_size.observe(size)
            self._synced = EngineStats(**{**stats.__dict__, "batch_sizes": Tally(stats.batch_sizes)})

    def exposition(self) -> bytes:
        """The scrape body (every worker's values with several workers)."""
        self.sync()
        return generate_latest(self.registry)
