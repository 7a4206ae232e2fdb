"""`ctxcompress bench`: its reading of torch.profiler tables, and how it deals batches to engine processes."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
from ctxcompress_eval.bench import _EngineProcesses, device_time_ms


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


def _fake_engines(delays: list[float]) -> tuple[_EngineProcesses, list[list[int]]]:
    """Engine "processes" as threads on real pipes: each echoes its chunk's request ids after its own delay."""
    engines = object.__new__(_EngineProcesses)
    engines._conns, engines._procs = [], []
    seen: list[list[int]] = [[] for _ in delays]

    def serve(conn, index: int, delay: float) -> None:  # noqa: ANN001
        while (chunk := conn.recv()) is not None:
            time.sleep(delay)
            if any(r["id"] < 0 for r in chunk):
                conn.send(("error", "bad request"))
                continue
            seen[index].extend(r["id"] for r in chunk)
            conn.send([{"id": r["id"]} for r in chunk])

    for index, delay in enumerate(delays):
        parent, child = multiprocessing.Pipe()
        threading.Thread(target=serve, args=(child, index, delay), daemon=True).start()
        engines._conns.append(parent)
    return engines, seen


def test_chunks_go_to_whichever_process_is_free_and_results_keep_request_order() -> None:
    engines, seen = _fake_engines([0.0, 0.05])
    requests = [{"id": i} for i in range(10)]
    assert [r["id"] for r in engines.compress(requests, chunk=2)] == list(range(10))
    assert len(seen[0]) > len(seen[1])  # the fast one took more chunks than its equal share
    assert sorted(seen[0] + seen[1]) == list(range(10))
    assert [r["id"] for r in engines.compress(requests)] == list(range(10))  # chunk 0: one equal slice each
    assert seen[1][-5:] == [5, 6, 7, 8, 9]
    with pytest.raises(RuntimeError, match="bad request"):
        engines.compress([{"id": 1}, {"id": -1}], chunk=1)
    for conn in engines._conns:
        conn.send(None)
