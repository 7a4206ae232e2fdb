from __future__ import annotations

import pytest
import torch

from ctxcompress.engines.device import cpu_has_amx, resolve_device, scoring_dtype


@pytest.mark.parametrize(("setting", "expected"), [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_cpu_scoring_dtype_follows_the_setting(monkeypatch, setting, expected):
    monkeypatch.setenv("CTXCOMPRESS_CPU_DTYPE", setting)
    assert scoring_dtype(torch.device("cpu")) == expected


def test_cpu_scoring_dtype_auto_is_bf16_only_with_amx(monkeypatch):
    monkeypatch.setenv("CTXCOMPRESS_CPU_DTYPE", "auto")
    assert scoring_dtype(torch.device("cpu")) == (torch.bfloat16 if cpu_has_amx() else torch.float32)


def test_cpu_scoring_defaults_to_fp32(monkeypatch):
    monkeypatch.delenv("CTXCOMPRESS_CPU_DTYPE", raising=False)
    assert scoring_dtype(torch.device("cpu")) == torch.float32


def test_unknown_cpu_dtype_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CTXCOMPRESS_CPU_DTYPE", "float16")
    with pytest.raises(ValueError, match="CTXCOMPRESS_CPU_DTYPE"):
        scoring_dtype(torch.device("cpu"))


def test_cuda_without_an_index_resolves_to_the_current_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # `serve --device cuda` bound each worker thread with torch.cuda.set_device(torch.device("cuda")), which torch
    # refuses: the service never became ready. The device now carries the current GPU's index.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
