"""The host/device copy helpers keep values, dtype and shape (CUDA when present; the CPU path otherwise)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctxcompress.engines.transfers import copy_to_device, to_device, to_host

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_round_trip_keeps_values(device: str) -> None:
    values = np.arange(24, dtype=np.float32).reshape(4, 6) / 7
    on_device = to_device(values, torch.device(device))
    assert on_device.device.type == device
    back = to_host(on_device[:, 1:4])  # a strided view comes back as its own values
    assert back.device.type == "cpu" and back.dtype == torch.float32 and back.shape == (4, 3)
    np.testing.assert_array_equal(back.numpy(), values[:, 1:4])


@pytest.mark.parametrize("device", DEVICES)
def test_copy_to_device_and_back_in_bfloat16(device: str) -> None:
    target = torch.zeros(3, 5, dtype=torch.bfloat16, device=device)
    source = torch.linspace(-2, 2, 15).reshape(3, 5).to(torch.bfloat16)
    copy_to_device(target, source)
    back = to_host(target)
    assert back.dtype == torch.bfloat16
    assert torch.equal(back, source)
