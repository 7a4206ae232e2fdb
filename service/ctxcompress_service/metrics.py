"""Prometheus metrics: per-app registry; engine state (queue depth, batch sizes) is read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ctxcompress.serving.protocol import EngineClient
from ctxcompress.types import CompressionResult

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _EngineCollector(Collector):
    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Any]:
        engine: EngineClient | None = self._engine()
        if engine is None:
            return
        stats = engine.stats()
        yield GaugeMetricFamily("ctxcompress_queue_depth", "requests waiting for a batch", value=stats.queue_depth)
        yield GaugeMetricFamily("ctxcompress_in_flight_requests", "admitted requests", value=stats.in_flight)
        yield GaugeMetricFamily(
            "ctxcompress_max_concurrent_requests", "admission bound", value=stats.max_concurrent_requests
        )
        yield GaugeMetricFamily("ctxcompress_running_batches", "batches on devices", value=stats.running_batches)
        for name, doc, value in (
            ("ctxcompress_engine_requests", "requests submitted to the engine", stats.requests_total),
            ("ctxcompress_engine_dropped", "requests dropped unrun (caller gone or expired)", stats.dropped_total),
            ("ctxcompress_engine_timeouts", "requests that timed out", stats.timeouts_total),
            ("ctxcompress_engine_rejected", "requests rejected as overloaded", stats.rejected_total),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        batches = HistogramMetricFamily("ctxcompress_batch_size", "requests per compress_batch call")
        buckets = [(("+Inf" if b == float("inf") else str(int(b))), n) for b, n in stats.batch_size_buckets()]
        total = sum(size * n for size, n in stats.batch_sizes.items())
        batches.add_metric([], buckets, sum_value=total)
        yield batches
        yield CounterMetricFamily(
            "ctxcompress_batch_seconds", "time spent running batches", value=stats.batch_seconds_sum
        )


class Metrics:
    """The service's metrics; ``engine_getter()`` returns the live engine (or None before startup)."""

    def __init__(self, engine_getter: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ctxcompress_http_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ctxcompress_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter("ctxcompress_tokens", "target-tokenizer tokens", ["direction"], registry=self.registry)
        self.registry.register(_EngineCollector(engine_getter))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_result(self, result: CompressionResult) -> None:
        self.tokens.labels("origin").inc(result.origin_tokens)
        self.tokens.labels("compressed").inc(result.compressed_tokens)
