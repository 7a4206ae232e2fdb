"""ServingOptions: the serving engine's queue and batching limits, with every default in this one place
(the service's ``CTXCOMPRESS_*`` settings take their defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServingOptions"]


@dataclass(frozen=True)
class ServingOptions:
    """Limits of :class:`~ctxcompress.serving.engine.AsyncCompressionEngine`.

    Attributes:
        max_concurrent_requests: admitted requests (queued + running) before :class:`Overloaded` (429).
        max_batch_requests: requests per ``compress_batch`` call.
        max_batch_tokens: origin tokens (target tokenizer) of the requests in one serving batch; a larger single
            request runs alone. (The engines' padded tokens per forward pass are ``EngineOptions.max_pass_tokens``.)
        max_wait_ms: how long an idle device waits for more requests before starting a batch (0: at once; a busy
            device's next batch takes every request that arrives until the device takes it, without waiting).
        request_timeout_s: default deadline per request (:class:`CompressionTimeout`).
        max_documents: documents per request before :class:`PayloadTooLarge`.
        max_input_tokens: origin tokens per request before :class:`PayloadTooLarge` (built compressors only).
        batches_per_device: batches assigned to a device at once: 2 = one running + one open behind it, which the
            worker thread takes the moment the running one ends (no gap between batches); 1 = the next batch opens
            only after the running one ends.
    """

    max_concurrent_requests: int = 512
    max_batch_requests: int = 32
    max_batch_tokens: int = 65_536
    max_wait_ms: float = 0.0
    request_timeout_s: float = 60.0
    max_documents: int = 1000
    max_input_tokens: int = 200_000
    batches_per_device: int = 2

    def __post_init__(self) -> None:
        for name in ("max_concurrent_requests", "max_batch_requests", "max_batch_tokens", "batches_per_device"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.max_wait_ms < 0 or self.request_timeout_s <= 0:
            raise ValueError("max_wait_ms must be >= 0 and request_timeout_s > 0")
