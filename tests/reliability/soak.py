"""Sustained load at and above saturation: calibrate capacity (closed loop), then open-loop arrivals at
``at_factor`` x capacity for half the time and ``above_factor`` x capacity for the other half, sampling the
server's RSS; every request is reconciled with the server's access log (lost / duplicated)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from tests.reliability.load import Phase, make_requests, reconcile, run_phase, summarize
from tests.reliability.server import ServerProcess

__all__ = ["run_soak"]


def run_soak(
    workdir: Path,
    *,
    seconds: float,
    calibrate_s: float = 20.0,
    at_factor: float = 1.0,
    above_factor: float = 2.0,
    docs: int = 3,
    max_concurrent_requests: int = 32,
    max_batch_requests: int = 16,
    rss_every_s: float = 5.0,
) -> dict[str, Any]:
    requests = make_requests(docs=docs)
    server = ServerProcess(
        workdir / "soak-server.log",
        max_concurrent_requests=max_concurrent_requests,
        max_batch_requests=max_batch_requests,
        request_timeout_s=120,
    )
    rss: list[tuple[float, float]] = []
    with server:
        started = time.monotonic()
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                rss.append((round(time.monotonic() - started, 1), round(server.rss_mb(), 1)))
                stop.wait(rss_every_s)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        callers = min(max_batch_requests, max_concurrent_requests)  # a full batch, never over the queue bound
        calibration = asyncio.run(run_phase(server.url, Phase("calibrate", calibrate_s, concurrency=callers), requests))
        capacity = max(summarize(calibration)["throughput_rps"], 0.5)
        phases = [
            Phase("at", seconds / 2, rate=round(capacity * at_factor, 2)),
            Phase("above", seconds / 2, rate=round(capacity * above_factor, 2)),
        ]
        for phase in phases:
            asyncio.run(run_phase(server.url, phase, requests, max_outstanding=2048))
        stop.set()
        sampler.join()
        access = server.access_log()
        exit_code = server.stop()
    outcomes = [o for p in phases for o in p.outcomes]
    total = Phase("total", 0.0, rate=sum(p.rate or 0 for p in phases) / len(phases), outcomes=outcomes)
    total.wall_s = sum(p.wall_s for p in phases)
    values = [mb for _, mb in rss]
    quarter = max(1, len(values) // 4)
    return {
        "setup": {
            "model": "tiny random Llama (2 layers, width 64) with SmolLM2's tokenizer; torch 1 thread",
            "method": "llmlingua, rate 0.4",
            "documents_per_request": docs,
            "max_concurrent_requests": max_concurrent_requests,
            "max_batch_requests": max_batch_requests,
            "seconds": seconds,
        },
        "capacity_rps": capacity,
        "calibration": summarize(calibration),
        "phases": [summarize(p) for p in phases],
        "total": summarize(total),
        "reconcile": reconcile(outcomes, access),
        "rss_mb": {
            "start": values[0] if values else None,
            "peak": max(values) if values else None,
            "first_quarter_max": max(values[:quarter]) if values else None,
            "last_quarter_max": max(values[-quarter:]) if values else None,
            "samples": rss,
        },
        "server_exit_code": exit_code,
    }
