"""AsyncCompressionEngine: the long-lived asyncio front that batches requests from many callers.

Design (after HF text-embeddings-inference's queue/infer split):

* **Admission** is bounded by ``asyncio.Semaphore(max_concurrent_requests)`` with a non-blocking check: a full
  engine raises :class:`~ctxcompress.errors.Overloaded` at once (never an unbounded backlog). Each request is
  validated with ``Compressor.prepare`` on admission, so bad input fails fast without waiting for a batch, and
  its origin token count (target tokenizer) becomes its batching cost.
* **One batcher coroutine** puts each admitted entry into its device's *open* batch: a batch handed to the
  device's worker thread but not yet taken by it. The thread seals the batch when it starts it, so a batch that
  waits behind a running one takes every request that arrives meanwhile (concurrency becomes batch size, with
  no gap between batches), up to ``max_batch_requests`` / ``max_batch_tokens``. An idle device starts a new batch
  at once, or after ``max_wait_ms`` when that is set. Entries whose caller has gone (future cancelled) or whose
  deadline passed are dropped unrun.
* **One worker thread per device** (``ThreadPoolExecutor(1)``, one ``Compressor`` each: data parallel). A new
  batch opens on the least-loaded device; at most ``batches_per_device`` batches (default 2: one running, one
  open behind it) are assigned to a device, and the rest of the requests wait in the queue.
* **Deadlines hold** (``serving/cost.py``): a :class:`CostModel` learns each method's seconds per token from
  the batches that ran. A request whose estimated wait (work queued and running ahead of it, per device) plus
  its own run time, scaled by how far such forecasts recently fell short (:class:`ForecastError`), exceeds its
  deadline is refused at admission (:class:`Overloaded`, 429, ``Retry-After`` = that wait) rather than accepted
  and timed out; a batch stops growing when it would make its tightest member late. Overload costs the newest
  requests a 429, not admitted requests a 504.
* Results come back through one ``asyncio.Future`` per request. ``shutdown(drain=True)`` stops admission, runs
  everything already accepted, then stops the threads.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ctxcompress.compressor import Compressor, RequestLike
from ctxcompress.engines import chunk_cache
from ctxcompress.engines.options import EngineOptions
from ctxcompress.errors import (
    CompressionTimeout,
    CtxCompressError,
    EngineUnavailable,
    ModelError,
    Overloaded,
    PayloadTooLarge,
)
from ctxcompress.methods import method_class, method_names
from ctxcompress.models import ModelRegistry
from ctxcompress.prompting import PreparedRequest
from ctxcompress.serving.cost import CostModel, ForecastError
from ctxcompress.serving.heap import HeapTrimmer
from ctxcompress.serving.options import ServingOptions
from ctxcompress.serving.profile_batch import profile_batch
from ctxcompress.serving.protocol import MethodDescription, ModelStatus
from ctxcompress.serving.stats import EngineStats
from ctxcompress.types import CompressionRequest, CompressionResult

__all__ = ["AsyncCompressionEngine", "expand_devices"]

logger = logging.getLogger("ctxcompress.serving")
_HEAP = HeapTrimmer()  # one per process: every device's worker thread reports its batches

_INLINE_PREPARE_CHARS = 65_536  # larger requests are tokenized off the event loop
# Share of a deadline that estimated work may fill: the cost model is a forecast, so leave room for its error.
_DEADLINE_SHARE = 0.8


def _reserves_memory(device: str) -> bool:
    """Whether ``device`` keeps what its largest batch allocated (PyTorch's CUDA caching allocator); on CPU the
    heap is trimmed after batches instead (:class:`HeapTrimmer`), and a profile batch would only cost time."""
    return device.startswith("cuda")


def expand_devices(devices: Sequence[str]) -> list[str]:
    """``auto`` → every visible GPU (``cuda:0``, ``cuda:1``, …) or ``cpu``; other names pass through."""
    out: list[str] = []
    for device in devices:
        if device == "auto":
            import torch

            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            out.extend([f"cuda:{i}" for i in range(count)] or ["cpu"])
        else:
            out.append(device)
    return out


@dataclass(eq=False)
class _Entry:
    prepared: PreparedRequest  # validated and counted on admission; the worker runs it as it is
    future: asyncio.Future[CompressionResult]
    deadline: float
    cost_s: float = 0.0  # estimated run time when admitted (CostModel)

    @property
    def request(self) -> CompressionRequest:
        return self.prepared.request

    @property
    def tokens(self) -> int:
        """Its batching cost: origin tokens in the target tokenizer."""
        return self.prepared.origin_tokens


@dataclass(eq=False)
class _Worker:
    device: str
    compressor: Compressor
    executor: ThreadPoolExecutor
    assigned: int = 0  # batches submitted and not finished (running + waiting)
    index: int = 0
    busy_until: float = 0.0  # loop time at which its assigned batches are expected to finish
    open_batch: _Batch | None = None  # its latest batch, which takes more entries until the thread seals it


@dataclass(eq=False)
class _Batch:
    """Entries bound for one device. The event loop adds entries while the batch is open; the worker thread
    seals it when it starts running it (the lock makes "add unless sealed" and "seal" atomic)."""

    worker: _Worker
    entries: list[_Entry]
    tokens: int
    estimate_s: float = 0.0  # the cost model's estimate of its entries, summed as they joined
    started: bool = False  # handed to the worker thread
    sealed: bool = False  # taken by the worker thread: no more entries
    timer: asyncio.TimerHandle | None = None  # an idle device's start after max_wait_ms
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: _Entry, max_requests: int, max_tokens: int) -> bool:
        with self.lock:
            if self.sealed or len(self.entries) >= max_requests or self.tokens + entry.tokens > max_tokens:
                return False
            self.entries.append(entry)
            self.tokens += entry.tokens
            return True

    def seal(self) -> list[_Entry]:
        with self.lock:
            self.sealed = True
            return list(self.entries)


@dataclass
class _Counters:
    requests: int = 0
    dropped: int = 0
    timeouts: int = 0
    rejected: int = 0
    batches: int = 0
    batch_seconds: float = 0.0
    batch_sizes: dict[int, int] = field(default_factory=dict)


class AsyncCompressionEngine:
    """Batches concurrent compression requests onto one worker thread per device.

    Args:
        compressors: ready Compressors, one per device (tests inject ones backed by tiny models); when left
            out, one ``Compressor(device=d)`` is built per entry of ``devices``.
        devices: ``["auto"]`` (every GPU, else CPU), ``["cpu"]``, ``["cuda:0", "cuda:1"]``…
        options: queue and batching limits (:class:`ServingOptions`, defaults there).
        engine_options: how built compressors run their models (:class:`EngineOptions`).
        registry: model names → folders for built compressors (the service passes one that never converts a
            model inside a request).

    Example:
        >>> engine = AsyncCompressionEngine(devices=["cpu"])
        >>> await engine.start()
        >>> result = await engine.compress({"documents": docs, "question": q, "budget": {"rate": 0.3}})
        >>> await engine.shutdown()
    """

    def __init__(
        self,
        compressors: Sequence[Compressor] | None = None,
        *,
        devices: Sequence[str] = ("auto",),
        options: ServingOptions | None = None,
        engine_options: EngineOptions | None = None,
        registry: ModelRegistry | None = None,
    ) -> None:
        options = options or ServingOptions()
        if compressors is None:
            compressors = [
                Compressor(
                    device=d,
                    registry=registry,
                    max_input_tokens=options.max_input_tokens,
                    engine_options=engine_options,
                )
                for d in expand_devices(devices)
            ]
        if not compressors:
            raise ValueError("the engine needs at least one compressor (device)")
        self._workers = [
            _Worker(
                str(c.pool.device),
                c,
                ThreadPoolExecutor(
                    1, thread_name_prefix=f"ctxc-{c.pool.device}", initializer=_bind_device, initargs=(c.pool.device,)
                ),
                index=i,
            )
            for i, c in enumerate(compressors)
        ]
        self.options = options
        self.max_wait_s = options.max_wait_ms / 1000
        self._permits: asyncio.Semaphore | None = None
        self._queue: asyncio.Queue[_Entry | None] | None = None
        self._device_free: asyncio.Condition | None = None
        self._batcher: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._accepting = False
        self._queue_closed = False
        self._held = 0
        self._admitted = 0
        self._counters = _Counters()
        self._cost = CostModel()
        self._forecast_error = ForecastError()
        self._queued_s = 0.0  # estimated run time of the admitted entries not yet in a batch

    # ---- lifecycle -------------------------------------------------------------------------------------

    @property
    def compressors(self) -> list[Compressor]:
        return [w.compressor for w in self._workers]

    @property
    def devices(self) -> list[str]:
        return [w.device for w in self._workers]

    async def start(self) -> None:
        """Start the batcher (idempotent). Call from the event loop that will serve requests."""
        if self._batcher is not None:
            return
        self._permits = asyncio.Semaphore(self.options.max_concurrent_requests)
        self._queue = asyncio.Queue()
        self._device_free = asyncio.Condition()
        self._batcher = asyncio.create_task(self._batch_loop(), name="ctxcompress-batcher")
        self._accepting = True

    async def warmup(self, requests: Sequence[RequestLike], *, profile_method: str | None = None) -> None:
        """Run ``requests`` on every device (loads models, first-call allocations), then once more to seed the
        cost model with a warm measurement.

        With ``profile_method``, each CUDA device then runs the :mod:`profile batch
        <ctxcompress.serving.profile_batch>` of that method once (the serving limits' largest batch), so its
        memory peak is taken before the service is ready.
        """
        loop = asyncio.get_running_loop()

        def run(worker: _Worker) -> tuple[list[tuple[str, int]], float]:
            compressor = worker.compressor
            compressor.compress_batch(list(requests), return_exceptions=False)
            prepared = [compressor.prepare(r) for r in requests]
            started = time.perf_counter()
            compressor.compress_batch(list(requests), return_exceptions=False)
            seconds = time.perf_counter() - started
            if profile_method is not None and _reserves_memory(worker.device):
                self._run_profile_batch(compressor, profile_method, worker.device)
            return [(p.request.method, p.origin_tokens) for p in prepared], seconds

        for work, seconds in await asyncio.gather(*(loop.run_in_executor(w.executor, run, w) for w in self._workers)):
            self._cost.observe(work, seconds)

    def _run_profile_batch(self, compressor: Compressor, method: str, device: str) -> None:
        def count_tokens(request: RequestLike) -> int:
            return compressor.prepare(request).origin_tokens

        limits = self.options
        batch = profile_batch(
            method, requests=limits.max_batch_requests, tokens=limits.max_batch_tokens, count_tokens=count_tokens
        )
        started = time.perf_counter()
        compressor.compress_batch(batch, return_exceptions=False)
        seconds = time.perf_counter() - started
        logger.info("profile batch on %s: %d requests, %.2f s", device, len(batch), seconds)

    async def run_on_devices(self, fn: Any) -> list[Any]:
        """Call ``fn(compressor)`` on every device's worker thread (e.g. to preload models).

        The first device runs alone, then the others together: first use imports and converts what all devices
        share (transformers' lazy imports are not thread-safe: concurrent first imports failed on a 2-GPU host).
        A device that fails is named in the :class:`ModelError`; nothing is half-served silently.
        """
        loop = asyncio.get_running_loop()
        first, rest = self._workers[0], self._workers[1:]
        outputs = await asyncio.gather(
            loop.run_in_executor(first.executor, fn, first.compressor), return_exceptions=True
        )
        if rest:
            outputs += await asyncio.gather(
                *(loop.run_in_executor(w.executor, fn, w.compressor) for w in rest), return_exceptions=True
            )
        failed = [
            (w.index, w.device, out)
            for w, out in zip(self._workers, outputs, strict=True)
            if isinstance(out, Exception)
        ]
        if failed:
            detail = "; ".join(f"device {i} ({device}): {type(exc).__name__}: {exc}" for i, device, exc in failed)
            raise ModelError(f"{len(failed)} of {len(self._workers)} devices failed to prepare ({detail})")
        for out in outputs:
            if isinstance(out, BaseException):
                raise out
        return list(outputs)

    async def load_models(self, names: Sequence[str]) -> None:
        """Convert (once, shared by all devices) and load the named models on every device, each by the pool's
        loader for its kind (a causal LM as a scorer, a sentence encoder, a token classifier, a generator)."""
        registry = self._workers[0].compressor.pool.registry

        def convert_once() -> None:  # before any device loads: conversion writes files all devices share
            import transformers  # noqa: F401  (first import off the device threads: its lazy imports are not thread-safe)

            for name in names:
                registry.prepare(name)

        def load(compressor: Compressor) -> None:
            pool = compressor.pool
            loaders = {
                "causal-lm": pool.scorer,
                "sentence-encoder": pool.encoder,
                "token-classifier": pool.classifier,
                "seq2seq": pool.generator,
            }
            for name in names:
                loaders[pool.registry.spec(name).kind](name)

        await asyncio.to_thread(convert_once)
        await self.run_on_devices(load)

    def models(self) -> list[ModelStatus]:
        """Every configured model (requests pick by name) and whether any device has it loaded."""
        registry = self._workers[0].compressor.pool.registry
        loaded = {name for w in self._workers for _, name in w.compressor.pool.loaded_engines()}
        return [
            ModelStatus(name, registry.spec(name).kind, registry.spec(name).description, name in loaded)
            for name in registry.names()
        ]

    def loaded(self) -> list[str]:
        """``kind:name`` of the engines loaded on any device, sorted."""
        return sorted({f"{kind}:{name}" for w in self._workers for kind, name in w.compressor.pool.loaded_engines()})

    @staticmethod
    def methods() -> list[MethodDescription]:
        """The registered methods, their summaries and option schemas."""
        return [
            MethodDescription(
                name=name,
                summary=method_class(name).summary,
                needs_question=method_class(name).needs_question,
                options_schema=method_class(name).options_model.model_json_schema(),
            )
            for name in method_names()
        ]

    async def shutdown(self, *, drain: bool = True) -> None:
        """Stop admitting; with ``drain`` run every accepted request first, else fail the queued ones."""
        self._accepting = False
        if self._batcher is not None and self._queue is not None:
            if not drain:
                self._fail_queued(EngineUnavailable("engine shut down before the request ran", retry_after_s=1.0))
            self._queue.put_nowait(None)
            await asyncio.gather(self._batcher, return_exceptions=True)
            if self._batches:
                await asyncio.gather(*list(self._batches), return_exceptions=True)
            self._batcher = None
        for worker in self._workers:
            worker.executor.shutdown(wait=True)

    def check_health(self) -> None:
        """Raise :class:`EngineUnavailable` unless the engine accepts requests and its batcher is alive."""
        if not self._accepting or self._batcher is None:
            raise EngineUnavailable("compression engine is not running", retry_after_s=1.0)
        if self._batcher.done():
            raise EngineUnavailable("compression engine's batcher stopped", retry_after_s=5.0)

    def stats(self) -> EngineStats:
        from collections import Counter

        c = self._counters
        cache = chunk_cache.totals()
        queued = (self._queue.qsize() if self._queue else 0) + self._held
        return EngineStats(
            queue_depth=queued,
            in_flight=self._admitted,
            running_batches=sum(w.assigned for w in self._workers),
            max_concurrent_requests=self.options.max_concurrent_requests,
            devices=self.devices,
            requests_total=c.requests,
            dropped_total=c.dropped,
            timeouts_total=c.timeouts,
            rejected_total=c.rejected,
            batches_total=c.batches,
            batch_seconds_sum=c.batch_seconds,
            batch_sizes=Counter(c.batch_sizes),
            chunk_cache_hits_total=cache.hits,
            chunk_cache_misses_total=cache.misses,
            chunk_cache_bytes=cache.bytes,
            forecast_overrun=self._forecast_error.factor,
        )

    # ---- requests --------------------------------------------------------------------------------------

    def _check_documents(self, request: RequestLike) -> None:
        documents = request.documents if isinstance(request, CompressionRequest) else None
        if isinstance(request, dict) and isinstance(request.get("documents"), list):
            documents = request["documents"]
        if documents is not None and len(documents) > self.options.max_documents:
            raise PayloadTooLarge(
                f"request has {len(documents)} documents; the limit is {self.options.max_documents}", field="documents"
            )

    async def compress(self, request: RequestLike, *, timeout_s: float | None = None) -> CompressionResult:
        """Compress one request in the next batch; raises Overloaded, CompressionTimeout or the request's error."""
        result = (await self.compress_many([request], timeout_s=timeout_s, return_exceptions=False))[0]
        assert isinstance(result, CompressionResult)
        return result

    async def compress_many(
        self, requests: Sequence[RequestLike], *, timeout_s: float | None = None, return_exceptions: bool = True
    ) -> list[CompressionResult | CtxCompressError]:
        """Admit every request (one permit each, all or none) and wait for all of them.

        With ``return_exceptions`` an invalid or failed request yields its error in its place; otherwise the
        first error is raised. Overload is always raised (nothing was admitted).
        """
        await self._admit(len(requests))
        assert self._permits is not None
        self._admitted += len(requests)
        try:
            timeout = self.options.request_timeout_s if timeout_s is None else timeout_s
            waits = [self._submit(r, timeout) for r in requests]
            outputs = await asyncio.gather(*waits, return_exceptions=True)
        finally:
            self._admitted -= len(requests)
            for _ in requests:
                self._permits.release()
        results: list[CompressionResult | CtxCompressError] = []
        for out in outputs:
            if isinstance(out, CtxCompressError):
                if not return_exceptions:
                    raise out
                results.append(out)
            elif isinstance(out, BaseException):
                raise out
            else:
                results.append(out)
        return results

    async def _admit(self, n: int) -> None:
        """Take ``n`` permits without waiting (all or none), else raise Overloaded."""
        if not self._accepting or self._permits is None:
            raise EngineUnavailable("compression engine is not accepting requests", retry_after_s=1.0)
        taken = 0
        while taken < n:
            if self._permits.locked():  # the non-blocking check: acquire() below never suspends
                for _ in range(taken):
                    self._permits.release()
                self._counters.rejected += n
                raise Overloaded(
                    f"{self._admitted} requests in flight (limit {self.options.max_concurrent_requests}); retry later",
                    retry_after_s=self._retry_after(),
                )
            await self._permits.acquire()
            taken += 1

    def _retry_after(self) -> float:
        return float(max(1, math.ceil(self._backlog_s())))

    def _backlog_s(self) -> float:
        """Estimated seconds until a device could start a newly admitted request: the work queued and still
        running, shared over the devices."""
        now = asyncio.get_running_loop().time()
        running = sum(max(0.0, w.busy_until - now) for w in self._workers)
        return (self._queued_s + running) / len(self._workers)

    def estimated_cost_s(self) -> dict[str, float]:
        """Seconds per origin token by method, as measured so far (for metrics and tests)."""
        return self._cost.known()

    async def _submit(self, request: RequestLike, timeout: float) -> CompressionResult:
        self._counters.requests += 1
        self._check_documents(request)
        if _request_chars(request) > _INLINE_PREPARE_CHARS:
            prepared = await asyncio.to_thread(self._workers[0].compressor.prepare, request)
        else:
            prepared = self._workers[0].compressor.prepare(request)
        if prepared.fits_uncompressed():
            return prepared.unchanged()
        if self._queue_closed:
            raise EngineUnavailable("compression engine is shutting down", retry_after_s=1.0)
        loop = asyncio.get_running_loop()
        cost = self._cost.estimate(prepared.request.method, prepared.origin_tokens)
        wait = self._backlog_s()
        overrun = self._forecast_error.factor  # how far recent forecasts fell short (1.0: not at all)
        if wait > 0 and (wait + cost) * overrun > _DEADLINE_SHARE * timeout:
            self._counters.rejected += 1
            raise Overloaded(
                f"the work ahead (~{wait * overrun:.1f} s) and this request (~{cost * overrun:.1f} s) would not "
                f"finish within its {timeout:g} s deadline; retry later",
                retry_after_s=float(max(1, math.ceil(wait * overrun))),
            )
        admitted = loop.time()
        entry = _Entry(prepared, loop.create_future(), admitted + timeout, cost)
        assert self._queue is not None
        self._queued_s += cost
        self._queue.put_nowait(entry)
        try:
            result = await asyncio.wait_for(asyncio.shield(entry.future), timeout)
        except TimeoutError:
            entry.future.cancel()  # dropped unrun if still queued; result discarded if running
            self._counters.timeouts += 1
            self._forecast_error.observe(wait + cost, timeout)  # at least that long
            raise CompressionTimeout(f"compression did not finish within {timeout:g} s") from None
        except asyncio.CancelledError:
            entry.future.cancel()  # the caller went away: do not run it
            raise
        self._forecast_error.observe(wait + cost, loop.time() - admitted)
        return result

    # ---- batching --------------------------------------------------------------------------------------

    async def _next_entry(self) -> _Entry | None:
        """The next live entry from the queue (``None`` = shutdown sentinel)."""
        assert self._queue is not None
        while True:
            entry = await self._queue.get()
            if entry is None or self._alive(entry):
                return entry

    def _alive(self, entry: _Entry) -> bool:
        if entry.future.done():
            self._dequeue(entry)
            self._counters.dropped += 1
            return False
        if asyncio.get_running_loop().time() > entry.deadline:
            self._dequeue(entry)
            entry.future.set_exception(CompressionTimeout("request expired in the queue"))
            self._counters.dropped += 1
            return False
        return True

    def _dequeue(self, entry: _Entry) -> None:
        """``entry`` leaves the queue (into a batch, or dropped): its cost no longer waits ahead of others."""
        if entry.cost_s:
            self._queued_s = max(0.0, self._queued_s - entry.cost_s)
            entry.cost_s = 0.0

    async def _batch_loop(self) -> None:
        """Entries join a device's open batch while one has room; otherwise they wait for a device slot and open
        the next batch there. After the shutdown sentinel, what is still queued is batched and every open batch
        is started."""
        assert self._queue is not None
        while True:
            entry = await self._next_entry()
            if entry is None:
                self._queue_closed = True
                break
            await self._place(entry)
        while not self._queue.empty():  # admitted just before the sentinel
            entry = self._queue.get_nowait()
            if entry is not None and self._alive(entry):
                await self._place(entry)
        for worker in self._workers:
            if worker.open_batch is not None:
                self._start(worker.open_batch)

    async def _place(self, entry: _Entry) -> None:
        if any(self._join(w.open_batch, entry) for w in sorted(self._workers, key=lambda w: w.busy_until)):
            return
        self._held = 1  # counted in the queue depth while it waits for a device
        worker = await self._reserve_worker()
        self._held = 0
        if not self._alive(entry):  # it expired or lost its caller while waiting
            await self._release_worker(worker)
            return
        loop = asyncio.get_running_loop()
        batch = _Batch(worker, [entry], entry.tokens, estimate_s=self._estimate(entry))
        worker.open_batch = batch
        worker.busy_until = max(loop.time(), worker.busy_until) + batch.estimate_s
        self._dequeue(entry)
        idle = worker.assigned == 1  # nothing runs before it: it would start at once
        if idle and self.max_wait_s > 0 and not self._queue_closed and self.options.max_batch_requests > 1:
            batch.timer = loop.call_later(self.max_wait_s, self._start, batch)
        else:
            self._start(batch)

    def _join(self, batch: _Batch | None, entry: _Entry) -> bool:
        """Add ``entry`` to an open ``batch`` if it has room and nobody in it would become late; a full batch
        starts at once."""
        if batch is None or batch.sealed or self._makes_late(batch, entry):
            return False
        if not batch.add(entry, self.options.max_batch_requests, self.options.max_batch_tokens):
            return False
        estimate = self._estimate(entry)
        batch.estimate_s += estimate
        worker = batch.worker
        worker.busy_until = max(asyncio.get_running_loop().time(), worker.busy_until) + estimate
        self._dequeue(entry)
        if len(batch.entries) >= self.options.max_batch_requests:
            self._start(batch)
        return True

    def _estimate(self, entry: _Entry) -> float:
        return self._cost.estimate(entry.request.method, entry.tokens)

    def _makes_late(self, batch: _Batch, entry: _Entry) -> bool:
        """Whether ``batch`` with ``entry`` added is expected to end after its tightest member's deadline (the
        batch is its device's last: the device's expected finish already counts its members)."""
        now = asyncio.get_running_loop().time()
        finish = max(now, batch.worker.busy_until) + self._estimate(entry)
        tightest = min(entry.deadline, *(e.deadline for e in batch.entries))
        return finish > now + _DEADLINE_SHARE * (tightest - now)

    def _start(self, batch: _Batch) -> None:
        """Hand ``batch`` to its device's worker thread (once); it stays open until the thread takes it."""
        if batch.started:
            return
        batch.started = True
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.create_task(self._run_batch(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _reserve_worker(self) -> _Worker:
        """The least-loaded device with room for one more batch (``batches_per_device``)."""
        assert self._device_free is not None
        async with self._device_free:
            while True:
                worker = min(self._workers, key=lambda w: (w.assigned, w.index))
                if worker.assigned < self.options.batches_per_device:
                    worker.assigned += 1
                    return worker
                await self._device_free.wait()

    async def _release_worker(self, worker: _Worker) -> None:
        assert self._device_free is not None
        async with self._device_free:
            worker.assigned -= 1
            if worker.assigned == 0:
                worker.busy_until = 0.0
            self._device_free.notify_all()

    async def _run_batch(self, batch: _Batch) -> None:
        loop = asyncio.get_running_loop()
        worker = batch.worker
        entries: list[_Entry] = []
        elapsed = 0.0
        try:
            entries, outputs, elapsed = await loop.run_in_executor(
                worker.executor, _run_sealed, worker.compressor, batch
            )
        except Exception as exc:  # an engine crash: the batch fails, the engine keeps serving
            entries = batch.entries
            logger.exception("batch of %d failed on %s", len(entries), worker.device)
            outputs = [ModelError(f"compression failed on {worker.device}: {type(exc).__name__}")] * len(entries)
            elapsed = 0.0
        finally:
            if worker.open_batch is batch:
                worker.open_batch = None
            worker.busy_until += elapsed - batch.estimate_s  # a batch that ran long delays the one behind it
            await self._release_worker(worker)
        ran = sum(out is not None for out in outputs)
        c = self._counters
        c.dropped += len(entries) - ran
        if ran:
            c.batches += 1
            c.batch_seconds += elapsed
            c.batch_sizes[ran] = c.batch_sizes.get(ran, 0) + 1
            work = [(e.request.method, e.tokens) for e, out in zip(entries, outputs, strict=True) if out is not None]
            self._cost.observe(work, elapsed)
        for entry, out in zip(entries, outputs, strict=True):
            if entry.future.done() or out is None:
                continue
            if isinstance(out, BaseException):
                entry.future.set_exception(out)
            else:
                entry.future.set_result(out)

    def _fail_queued(self, error: CtxCompressError) -> None:
        assert self._queue is not None
        pending = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                pending.append(item)
        for entry in pending:
            if not entry.future.done():
                entry.future.set_exception(error)


def _bind_device(device: object) -> None:
    """Make the worker thread's current CUDA device its own (Triton kernels and CUDA graphs launch on the current
    device: on a 2-GPU H200 the second device's kernels failed with 'cannot be accessed from Triton')."""
    import torch

    if getattr(device, "type", None) == "cuda":
        torch.cuda.set_device(device)


def _run_sealed(
    compressor: Compressor, batch: _Batch
) -> tuple[list[_Entry], list[CompressionResult | CtxCompressError | None], float]:
    """On the worker thread: seal ``batch`` (no more entries join) and run it; its entries, their outputs and the
    seconds it ran (the cost model learns from run time, not from time spent waiting for the device)."""
    started = time.perf_counter()
    entries = batch.seal()
    outputs = _compress_isolated(compressor, entries)
    return entries, outputs, time.perf_counter() - started


def _compress_isolated(
    compressor: Compressor, batch: list[_Entry]
) -> list[CompressionResult | CtxCompressError | None]:
    """``compress_batch`` on the worker thread, for the entries whose caller is still waiting (``None`` in place
    of the others: a batch waiting while the device was busy can lose callers). A failure shared by a whole
    method group, or a crash of the whole batch, is retried request by request, so one bad request (e.g. an
    unknown model name in its options, or input that crashes a model) cannot fail its batch-mates."""
    live = [i for i, e in enumerate(batch) if not e.future.done()]  # a read of a flag set on the loop thread
    outputs: list[CompressionResult | CtxCompressError | None] = [None] * len(batch)
    if not live:
        return outputs
    try:
        results = compressor.compress_prepared([batch[i].prepared for i in live], return_exceptions=True)
    except Exception:  # a crash (not a request error) takes the whole batch: find the culprit one by one
        if len(live) == 1:
            raise
        logger.exception(
            "batch of %d crashed on %s; retrying its requests one by one", len(live), compressor.pool.device
        )
        results = [_compress_alone(compressor, batch[i].prepared) for i in live]
    shared = {id(o) for o in results if isinstance(o, CtxCompressError) and sum(x is o for x in results) > 1}
    for i, out in zip(live, results, strict=True):
        if id(out) in shared:
            out = _compress_alone(compressor, batch[i].prepared)
        outputs[i] = out
    _HEAP.maybe_trim()  # on the worker thread: the event loop never waits for it
    return outputs


def _compress_alone(compressor: Compressor, prepared: PreparedRequest) -> CompressionResult | CtxCompressError:
    """One request on its own; a crash becomes its :class:`ModelError` (500) instead of escaping."""
    try:
        return compressor.compress_prepared([prepared], return_exceptions=True)[0]
    except Exception as exc:
        logger.exception("request crashed on %s", compressor.pool.device)
        return ModelError(f"compression failed on {compressor.pool.device}: {type(exc).__name__}")


def _request_chars(request: RequestLike) -> int:
    if isinstance(request, CompressionRequest):
        return sum(len(d) for d in request.documents)
    documents = request.get("documents") if isinstance(request, dict) else None
    return sum(len(d) for d in documents if isinstance(d, str)) if isinstance(documents, list) else 0
