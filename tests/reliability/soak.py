"""Sustained load at and above saturation: calibrate capacity (closed loop), then open-loop arrivals at
``at_factor`` x capacity for half the time and ``above_factor`` x capacity for the other half, sampling the
server's RSS (and GPU memory where ``nvidia-smi`` exists); every request is reconciled with the server's access
log (lost / duplicated).

:func:`tiny_target` is the CPU soak (tiny random model, the CI test); ``scripts/soak_test.py --serve-workers N``
builds a target around the real ``ctxcompress serve`` (the GPU soak).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability.load import Phase, make_requests, reconcile, run_phase_in_processes, summarize
from tests.reliability.server import ServerProcess

__all__ = ["SoakTarget", "run_soak", "tiny_target"]


@dataclass
class SoakTarget:
    """What is soaked: a server (not yet started), the request templates, and the closed-loop callers that measure
    its capacity (enough to fill its batches, never more than its queue bound)."""

    server: ServerProcess
    requests: list[dict[str, Any]]
    callers: int
    setup: dict[str, Any] = field(default_factory=dict)
    warmup_s: float = 0.0  # closed-loop traffic before the calibration, not counted (CUDA graphs, caches)


def tiny_target(
    workdir: Path, *, docs: int = 3, max_concurrent_requests: int = 32, max_batch_requests: int = 16
) -> SoakTarget:
    """The tiny-model server (``tests.reliability.server``) with llmlingua at rate 0.4."""
    server = ServerProcess(
        workdir / "soak-server.log",
        max_concurrent_requests=max_concurrent_requests,
        max_batch_requests=max_batch_requests,
        request_timeout_s=120,
    )
    return SoakTarget(
        server=server,
        requests=make_requests(docs=docs),
        callers=min(max_batch_requests, max_concurrent_requests),
        setup={
            "model": "tiny random Llama (2 layers, width 64) with SmolLM2's tokenizer; torch 1 thread",
            "method": "llmlingua, rate 0.4",
            "documents_per_request": docs,
            "max_concurrent_requests": max_concurrent_requests,
            "max_batch_requests": max_batch_requests,
        },
    )


def _gpu_memory_mib() -> list[float] | None:
    """Memory in use on each GPU (MiB), or None without ``nvidia-smi``."""
    if not shutil.which("nvidia-smi"):
        return None
    result = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return [float(v) for v in result.stdout.split()] if result.returncode == 0 else None


def _flatness(samples: list[tuple[float, float]]) -> dict[str, Any]:
    values = [value for _, value in samples]
    quarter = max(1, len(values) // 4)
    return {
        "start": values[0] if values else None,
        "peak": max(values) if values else None,
        "first_quarter_max": max(values[:quarter]) if values else None,
        "last_quarter_max": max(values[-quarter:]) if values else None,
        "samples": samples,
    }


def run_soak(
    target: SoakTarget,
    *,
    seconds: float,
    calibrate_s: float = 20.0,
    at_factor: float = 1.0,
    above_factor: float = 2.0,
    rss_every_s: float = 5.0,
    client_processes: int = 1,
) -> dict[str, Any]:
    """Warm-up, calibration (closed loop: the capacity), then ``seconds / 2`` each at ``at_factor`` and
    ``above_factor`` times the capacity (open loop, up to 2,048 requests outstanding), from ``client_processes``
    load-generator processes; the report ``scripts/soak_test.py`` prints."""
    server, requests = target.server, target.requests
    rss: list[tuple[float, float]] = []
    gpu: list[tuple[float, float]] = []
    with server:
        started = time.monotonic()
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                at = round(time.monotonic() - started, 1)
                rss.append((at, round(server.rss_mb(), 1)))
                if (memory := _gpu_memory_mib()) is not None:
                    gpu.append((at, sum(memory)))
                stop.wait(rss_every_s)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        def run(phase: Phase, max_outstanding: int = 1024) -> Phase:
            return run_phase_in_processes(
                server.url, phase, requests, processes=client_processes, max_outstanding=max_outstanding
            )

        if target.warmup_s:
            run(Phase("warmup", target.warmup_s, concurrency=target.callers))
        calibration = run(Phase("calibrate", calibrate_s, concurrency=target.callers))
        capacity = max(summarize(calibration)["throughput_rps"], 0.5)
        phases = [
            Phase("at", seconds / 2, rate=round(capacity * at_factor, 2)),
            Phase("above", seconds / 2, rate=round(capacity * above_factor, 2)),
        ]
        phases = [run(phase, max_outstanding=2048) for phase in phases]
        stop.set()
        sampler.join()
        access = server.access_log()
        exit_code = server.stop()
    outcomes = [o for p in phases for o in p.outcomes]
    total = Phase("total", 0.0, rate=sum(p.rate or 0 for p in phases) / len(phases), outcomes=outcomes)
    total.wall_s = sum(p.wall_s for p in phases)
    return {
        "setup": target.setup
        | {"seconds": seconds, "calibration_callers": target.callers, "client_processes": client_processes},
        "capacity_rps": capacity,
        "calibration": summarize(calibration),
        "phases": [summarize(p) | server_side(p, access) for p in phases],
        "total": summarize(total),
        "reconcile": reconcile(outcomes, access),
        "rss_mb": _flatness(rss),
        "gpu_memory_mib": _flatness(gpu) if gpu else None,
        "server_exit_code": exit_code,
    }


def server_side(phase: Phase, access_log: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the served requests' time went: inside the app (the access log's ``ms``, from the middleware's first
    sight of the request to its response) against the client's latency. The rest waited outside the app: in the
    client's pool, opening a connection (``pool_wait``, ``connect`` in :func:`summarize`), or on the server
    before the app saw it (``on_server_outside``: accept queue, socket buffer, event loop), where admission
    control cannot see it."""
    inside = {r["request_id"]: float(r["ms"]) for r in access_log if r.get("route") == "/v1/compress" and "ms" in r}
    served = [o for o in phase.outcomes if o.status == 200 and o.id in inside]
    if not served:
        return {}
    app = sorted(inside[o.id] for o in served)
    outside = sorted(max(o.latency_s * 1000 - inside[o.id], 0.0) for o in served)
    on_server = sorted(
        max(o.latency_s * 1000 - ((o.pool_wait_s or 0.0) + (o.connect_s or 0.0)) * 1000 - inside[o.id], 0.0)
        for o in served
    )

    def at(values: list[float], q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 1)

    return {
        "app_p50_ms": at(app, 0.5),
        "app_p99_ms": at(app, 0.99),
        "outside_p50_ms": at(outside, 0.5),
        "outside_p99_ms": at(outside, 0.99),
        "on_server_outside_p50_ms": at(on_server, 0.5),
        "on_server_outside_p99_ms": at(on_server, 0.99),
    }
