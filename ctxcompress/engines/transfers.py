"""Copies between host and device that keep the host free while the GPU works.

A copy from ordinary (pageable) host memory — ``tensor.to("cuda")``, ``torch.tensor(values, device="cuda")``,
``cuda_tensor.copy_(host_tensor)`` — returns only after every kernel already queued on the stream has finished, so
the host cannot prepare the next step while the GPU runs the current one. Staged in pinned memory and copied with
``non_blocking=True``, the copy is queued behind those kernels instead (PyTorch's caching host allocator keeps the
staging block until the copy's stream event has passed, so the caller may drop or reuse its array at once).

The way back, ``tensor.cpu()`` from the GPU, copies through pageable staging and waits by spinning a core until every
queued kernel is done; with several engine processes on one GPU those spinning waiters take the cores the other
processes' host work needs. :func:`to_host` copies into pinned memory and sleeps on a blocking event instead.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["copy_to_device", "to_device", "to_host"]


def to_device(values: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """``values`` (a host array or tensor) on ``device``, queued without waiting for the device on CUDA."""
    tensor = torch.from_numpy(np.ascontiguousarray(values)) if isinstance(values, np.ndarray) else values
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def copy_to_device(target: torch.Tensor, source: torch.Tensor) -> None:
    """``target.copy_(source)`` for a host ``source``, queued without waiting for the device on CUDA."""
    if target.device.type == "cuda" and source.device.type == "cpu":
        target.copy_(source.pin_memory(), non_blocking=True)
    else:
        target.copy_(source)


def to_host(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor.cpu()``: on CUDA copied into pinned memory behind the queued kernels, the calling thread sleeping
    (not spinning, and without the GIL) until the copy has landed."""
    if tensor.device.type != "cuda":
        return tensor.cpu()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    landed = torch.cuda.Event(blocking=True)
    landed.record(torch.cuda.current_stream(tensor.device))
    landed.synchronize()
    return host
