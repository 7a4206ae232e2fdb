"""`ctxcompress bench`'s reading of torch.profiler tables."""

from __future__ import annotations

import pytest
from ctxcompress_eval.bench import device_time_ms


@pytest.mark.parametrize(
    ("table", "ms"),
    [
        ("Self CPU time total: 10.848ms\nSelf CUDA time total: 5.496ms\n", 5.496),
        ("Self CPU time total: 1.2s\nSelf CUDA time total: 450.5us\n", 0.4505),
        ("Self CUDA time total: 1.250s", 1250.0),
        ("Self CPU time total: 3.100ms\n", None),  # a CPU-only profile has no device line
    ],
)
def test_the_device_total_is_read_in_milliseconds_and_never_from_the_cpu_line(table: str, ms: float | None) -> None:
    if ms is None:
        assert device_time_ms(table) is None
    else:
        assert device_time_ms(table) == pytest.approx(ms)
