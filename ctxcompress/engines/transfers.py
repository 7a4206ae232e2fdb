"""Host → device copies that do not make the host wait for the GPU.

A copy from ordinary (pageable) host memory — ``tensor.to("cuda")``, ``torch.tensor(values, device="cuda")``,
``cuda_tensor.copy_(host_tensor)`` — returns only after every kernel already queued on the stream has finished, so
the host cannot prepare the next step while the GPU runs the current one. Staged in pinned memory and copied with
``non_blocking=True``, the copy is queued behind those kernels instead (PyTorch's caching host allocator keeps the
staging block until the copy's stream event has passed, so the caller may drop or reuse its array at once).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["copy_to_device", "to_device"]


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
