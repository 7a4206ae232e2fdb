"""Device and dtype choice: bf16 on CUDA, fp32 on CPU (bf16 is slower than fp32 on common CPUs)."""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "default_dtype", "is_oom"]


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → ``cuda`` when a GPU is present, else ``cpu``; ``cuda:N`` and ``cpu`` pass through."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return resolved


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def is_oom(exc: BaseException) -> bool:
    """True for CUDA out-of-memory errors (and the simulated one raised by token caps in tests)."""
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()
