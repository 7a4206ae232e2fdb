"""``serve --workers N`` on Linux: one SO_REUSEPORT socket per worker (``ctxcompress_service/supervisor.py``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.reliability.server import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing is Linux's")


def _supervisor(port: int, workers: int, app_factory: str) -> subprocess.Popen:
    code = (
        "import sys; from ctxcompress_service.supervisor import run_workers; "
        f"sys.exit(run_workers({workers}, host='127.0.0.1', port={port}, "
        f"app_factory='tests.unit_tests.supervised_apps:{app_factory}', log_level='warning'))"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _pids_of_new_connections(url: str, count: int) -> Counter:
    """``count`` connections opened at once (a client pool starting), one request each: which worker served each
    (its pid), or ``refused``."""
    served: list[str] = []
    barrier = threading.Barrier(count)

    def call() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            barrier.wait()
            try:
                served.append(client.get("/").text)
            except httpx.TransportError:
                served.append("refused")

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return Counter(served)


def _wait_for_workers(url: str, workers: int, deadline_s: float = 60) -> Counter:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        served = _pids_of_new_connections(url, 4 * workers)
        if len(served) == workers and "refused" not in served:
            return served
        time.sleep(0.2)
    pytest.fail(f"{workers} workers did not all answer")


def test_connections_spread_over_every_worker_and_a_dead_worker_is_replaced_on_its_socket() -> None:
    """A burst of 90 new connections reaches each of 3 workers (the kernel hashes them over the sockets: 30 each
    expected, fewer than 8 on one has odds below 1e-5). Right after a worker is killed, new connections hashed to
    its socket wait there for the replacement instead of being refused (the supervisor holds the socket open).
    SIGTERM stops everything with status 0."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _supervisor(port, 3, "pid_app")
    try:
        _wait_for_workers(url, 3)
        served = _pids_of_new_connections(url, 90)
        assert sum(served.values()) == 90
        assert len(served) == 3 and min(served.values()) >= 8, served
        victim = next(iter(served))
        os.kill(int(victim), signal.SIGKILL)
        during = _pids_of_new_connections(url, 60)
        assert "refused" not in during and victim not in during, during
        assert len(during) == 3, during  # the replacement served its socket's share
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 0, output


def test_a_worker_that_cannot_start_stops_the_service() -> None:
    """A broken app factory exits the supervisor with status 1 instead of restarting the worker forever."""
    process = _supervisor(free_port(), 2, "broken_app")
    try:
        output = process.communicate(timeout=120)[0].decode()
    finally:
        process.kill()
    assert process.returncode == 1, output
    assert "no models here" in output and "failed to start" in output


def test_the_port_of_the_first_socket_is_shared_when_asked_for_port_zero() -> None:
    from ctxcompress_service.supervisor import bind_reuse_port

    first = bind_reuse_port("127.0.0.1", 0)
    second = bind_reuse_port("127.0.0.1", first.getsockname()[1])
    try:
        assert first.getsockname() == second.getsockname()
    finally:
        first.close()
        second.close()
