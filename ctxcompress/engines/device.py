"""Device and dtype choice.

Models run in bf16 on CUDA and fp32 on CPU. The causal-LM scorer (``scoring_dtype``) can also run in bf16 on
CPU: ``CTXCOMPRESS_CPU_DTYPE=auto`` picks bf16 where the CPU has AMX tile units (Intel Sapphire Rapids and later;
there bf16 matrix products run ~6x faster than fp32: 1,955 vs 292 GFLOP/s on the 2-core dev machine, SmolLM2-135M
forward 3.3x faster), ``bfloat16`` forces it. The default stays fp32: bf16 scores change token-level choices
(answer retention on 60 NQ prompts 0.733 vs 0.750 in fp32), and in passes shared by several requests they would
depend on the batch's shapes, so in bf16 on CPU each request runs in passes of its own
(``ModelPool.requests_share_passes``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TypeVar

import torch

from ctxcompress.errors import ModelError

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["resolve_device", "default_dtype", "scoring_dtype", "cpu_has_amx", "is_oom", "halve_on_oom"]


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → the current GPU when one is present, else ``cpu``; ``cuda`` → the current GPU with its index
    (``cuda:0`` unless set otherwise: per-thread device binding needs one); ``cuda:N`` and ``cpu`` pass through."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def scoring_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA; on CPU fp32 unless ``CTXCOMPRESS_CPU_DTYPE`` is ``bfloat16``, or ``auto`` on an AMX CPU."""
    if device.type == "cpu":
        choice = os.environ.get("CTXCOMPRESS_CPU_DTYPE", "float32").lower()
        if choice not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"CTXCOMPRESS_CPU_DTYPE={choice!r}: use auto, float32 or bfloat16")
        if choice == "bfloat16" or (choice == "auto" and cpu_has_amx()):
            return torch.bfloat16
        return torch.float32
    return default_dtype(device)


@functools.cache
def cpu_has_amx() -> bool:
    """True when the CPU has AMX tile units and the OS lets this process use them."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_amx_tile_supported() and cpu._init_amx())  # type: ignore[union-attr]
    except (AttributeError, RuntimeError):
        return False


def is_oom(exc: BaseException) -> bool:
    """True for CUDA out-of-memory errors (and the simulated one raised by token caps in tests)."""
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def halve_on_oom(items: list[T], run: Callable[[list[T]], list[R]], *, device: torch.device, what: str) -> list[R]:
    """``run(items)``; on out of memory, free the allocator's cache and run each half in turn (recursively),
    concatenating the halves' lists. A single item that still does not fit raises :class:`ModelError` naming
    ``what`` it was.
    """
    try:
        return run(items)
    except Exception as exc:
        if not is_oom(exc):
            raise
        if len(items) == 1:
            raise ModelError(f"out of memory scoring a single {what}; lower the scorer's pass_tokens") from exc
        if device.type == "cuda":
            torch.cuda.empty_cache()
        half = len(items) // 2
        return halve_on_oom(items[:half], run, device=device, what=what) + halve_on_oom(
            items[half:], run, device=device, what=what
        )
