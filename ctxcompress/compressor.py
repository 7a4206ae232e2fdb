"""Compressor: the library's entry point. Validates requests, skips those within budget, and hands each
method the whole batch of its requests at once (so the engines can batch across requests)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ctxcompress import methods as _methods  # noqa: F401  (registers the methods)
from ctxcompress.engines.chunk_cache import ChunkCache, text_key
from ctxcompress.engines.options import EngineOptions
from ctxcompress.errors import CtxCompressError, InvalidInput, PayloadTooLarge
from ctxcompress.methods.base import CompressionMethod, method_class, method_names
from ctxcompress.models import ModelRegistry
from ctxcompress.pool import ModelPool
from ctxcompress.prompting import PreparedRequest, prepare
from ctxcompress.text.tokens import TargetTokenizer
from ctxcompress.types import CompressionRequest, CompressionResult

__all__ = ["Compressor", "RequestLike"]

RequestLike = CompressionRequest | dict[str, Any]

# Target-token counts of the documents as requests send them (each with its blank line): recurring chunks skip the
# tokenizer in `prepare`. ~100 bytes an entry: ~80,000 pieces.
PIECE_COUNT_CACHE_BYTES = 8 * 2**20


def _piece_entry_bytes(_count: int) -> int:
    return 100  # the key's digest and tuple, the int


def _as_request(item: RequestLike) -> CompressionRequest:
    if isinstance(item, CompressionRequest):
        return item
    from pydantic import ValidationError

    try:
        return CompressionRequest.model_validate(item)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"invalid request field {where!r}: {first['msg']}", field=where) from exc


class Compressor:
    """Compresses requests with any registered method; reuse one instance (it owns the loaded models).

    Args:
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        registry: model names → folders (default: embedded models + ``$CTXCOMPRESS_MODELS``).
        pool: share loaded models with another Compressor.
        max_input_tokens: larger requests are refused with PayloadTooLarge.
        engine_options: how the engines run (pass size, decoder, kernels, graphs); see :class:`EngineOptions`.

    Example:
        >>> compressor = Compressor()
        >>> result = compressor.compress({"documents": docs, "question": q, "budget": {"rate": 0.25}})
    """

    def __init__(
        self,
        *,
        device: str = "auto",
        registry: ModelRegistry | None = None,
        pool: ModelPool | None = None,
        max_input_tokens: int = 200_000,
        engine_options: EngineOptions | None = None,
    ) -> None:
        self.pool = pool or ModelPool(registry, device=device, options=engine_options)
        self.max_input_tokens = max_input_tokens
        self._methods: dict[str, CompressionMethod] = {}
        # off with the engines' chunk caches (`chunk_cache_mb=0`: every chunk treated as new, as benchmarks want)
        self._piece_counts = ChunkCache(
            PIECE_COUNT_CACHE_BYTES if self.pool.options.chunk_cache_mb else 0, _piece_entry_bytes
        )

    @staticmethod
    def methods() -> list[str]:
        return method_names()

    def method(self, name: str) -> CompressionMethod:
        if name not in self._methods:
            self._methods[name] = method_class(name)(self.pool)
        return self._methods[name]

    def prepare(self, request: RequestLike) -> PreparedRequest:
        """Validate one request (raises :class:`CtxCompressError` subclasses)."""
        parsed = _as_request(request)
        method = self.method(parsed.method)
        prepared = prepare(parsed, method.options_model, count_piece=self._count_piece)
        if prepared.origin_tokens > self.max_input_tokens:
            raise PayloadTooLarge(
                f"input has {prepared.origin_tokens} tokens; the limit is {self.max_input_tokens}",
                field="documents",
            )
        method.validate(prepared)
        return prepared

    def _count_piece(self, target: TargetTokenizer, piece: str) -> int:
        """``target.count(piece)``, from the cache when the piece came before."""
        key = text_key(piece, "target_tokens", target.name)
        if (known := self._piece_counts.get(key)) is None:
            known = target.count(piece)
            self._piece_counts.put(key, known)
        return known

    def compress(self, request: RequestLike) -> CompressionResult:
        result = self.compress_batch([request], return_exceptions=False)[0]
        assert isinstance(result, CompressionResult)
        return result

    def compress_batch(
        self, requests: Sequence[RequestLike], *, return_exceptions: bool = False
    ) -> list[CompressionResult | CtxCompressError]:
        """Compress many requests together (the throughput path: a method's requests share the engines' passes,
        except in bf16 on CPU, where each runs alone; :attr:`ModelPool.requests_share_passes`).

        With ``return_exceptions`` a failing request yields its error in place of a result and the others
        still run; otherwise the first error is raised.
        """
        prepared: list[PreparedRequest | CtxCompressError] = []
        for item in requests:
            try:
                prepared.append(self.prepare(item))
            except CtxCompressError as exc:
                if not return_exceptions:
                    raise
                prepared.append(exc)
        return self.compress_prepared(prepared, return_exceptions=return_exceptions)

    def compress_prepared(
        self, prepared: Sequence[PreparedRequest | CtxCompressError], *, return_exceptions: bool = False
    ) -> list[CompressionResult | CtxCompressError]:
        """:meth:`compress_batch` of requests already validated by :meth:`prepare` of this Compressor or one with
        the same settings (the serving engine prepares on admission); an error in the list is passed through."""
        outputs: list[CompressionResult | CtxCompressError | None] = [None] * len(prepared)
        by_method: dict[str, list[tuple[int, PreparedRequest]]] = defaultdict(list)
        for i, item in enumerate(prepared):
            if isinstance(item, CtxCompressError):
                outputs[i] = item
            elif item.fits_uncompressed():
                outputs[i] = item.unchanged()
            else:
                by_method[item.request.method].append((i, item))
        # one engine batch per method, or one per request where shared passes would change results (ModelPool)
        batches = [
            (name, batch)
            for name, members in by_method.items()
            for batch in ([members] if self.pool.requests_share_passes else [[m] for m in members])
        ]
        for name, batch in batches:
            started = time.perf_counter()
            try:
                results = self.method(name).compress_batch([p for _, p in batch])
            except CtxCompressError as exc:
                if not return_exceptions:
                    raise
                for i, _ in batch:
                    outputs[i] = exc
                continue
            batch_ms = round((time.perf_counter() - started) * 1000, 2)
            for (i, _), result in zip(batch, results, strict=True):
                timings = {**result.timings_ms, "batch": batch_ms, "batch_size": float(len(batch))}
                outputs[i] = result.model_copy(update={"timings_ms": timings})
        return [o for o in outputs if o is not None]
