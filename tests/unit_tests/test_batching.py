"""plan_batches with a padding tolerance: batches hold inputs of similar length once they are large enough."""

from __future__ import annotations

import numpy as np

from ctxcompress.engines.batching import plan_batches


def _padded(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)


def test_tolerance_bounds_each_batch_once_it_holds_min_tokens() -> None:
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in np.clip(rng.lognormal(5.1, 0.25, 1280), 40, 362)]  # like NQ's 20-document rows
    loose = plan_batches(lengths, max_padded_tokens=131072)
    tight = plan_batches(lengths, max_padded_tokens=131072, padding_tolerance=0.1, min_batch_tokens=8192)
    assert sorted(i for b in tight for i in b) == list(range(len(lengths)))
    for batch in tight:
        longest = lengths[batch[0]]
        assert longest * len(batch) <= 131072
        for position, index in enumerate(batch):  # a shorter input joins only while the batch is still small
            if lengths[index] < 0.9 * longest:
                assert longest * position < 8192
    waste = lambda batches: 1 - sum(lengths) / _padded(lengths, batches)  # noqa: E731
    assert waste(tight) < 0.1 < waste(loose)
    assert len(tight) <= 12


def test_small_batches_stay_one_pass() -> None:
    lengths = [362, 300, 250, 200, 180, 170, 160, 150, 150, 140, 120, 100, 90, 80, 70, 60, 50, 48, 40, 30]
    assert sum(lengths) < 8192 and max(lengths) * len(lengths) < 8192
    assert plan_batches(lengths, max_padded_tokens=131072, padding_tolerance=0.1) == [
        sorted(range(len(lengths)), key=lambda i: -lengths[i])
    ]


def test_without_tolerance_the_plan_is_the_cap_alone() -> None:
    lengths = [300, 100, 90, 80, 20, 10]
    assert plan_batches(lengths, max_padded_tokens=400) == [[0], [1, 2, 3, 4], [5]]
    # 80 is >10% below 100 and [100, 90] already costs 200 >= 100: a new batch; 20 joins 80's (cost 80 < 100)
    assert plan_batches(lengths, max_padded_tokens=400, padding_tolerance=0.1, min_batch_tokens=100) == [
        [0],
        [1, 2],
        [3, 4],
        [5],
    ]
