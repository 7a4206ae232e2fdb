"""HeapTrimmer (serving/heap.py): rate-limited malloc_trim after batches."""

from __future__ import annotations

import sys

import pytest

from ctxcompress.serving.heap import HeapTrimmer, malloc_trim


def test_trims_at_most_once_per_interval() -> None:
    now, calls = [0.0], []
    trimmer = HeapTrimmer(interval_s=5.0, trim=lambda pad: calls.append(pad) or 1, clock=lambda: now[0])
    assert not trimmer.maybe_trim()  # the interval starts at construction
    now[0] = 5.0
    assert trimmer.maybe_trim() and calls == [0]
    now[0] = 9.9
    assert not trimmer.maybe_trim()
    now[0] = 10.0
    assert trimmer.maybe_trim() and trimmer.trims == 2


def test_without_malloc_trim_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ctxcompress.serving.heap.malloc_trim", lambda: None)
    assert not HeapTrimmer(interval_s=0.0).maybe_trim()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_glibc_trim_runs_here() -> None:
    trim = malloc_trim()
    assert trim is not None and trim(0) in (0, 1)
    assert HeapTrimmer(interval_s=0.0).maybe_trim()
