"""``ctxcompress serve`` as a subprocess on the real embedded SmolLM2-135M (CPU, offline): a real NQ request
through the client, then SIGTERM while a request is in flight (it completes, then the process exits)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ctxcompress import CompressionResult
from ctxcompress.client import CtxCompressClient
from tests.conftest import gold_index, nq_documents, nq_rows
from tests.unit_tests.test_service_http import metric

pytestmark = pytest.mark.real_model
ROOT = Path(__file__).resolve().parents[2]
INFO_CALLS = 24


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served():  # noqa: ANN201
    port = free_port()
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "CTXCOMPRESS_WARMUP": "false",
        "CTXCOMPRESS_REQUEST_TIMEOUT_S": "600",  # 2 shared CPU cores: be patient
        "CTXCOMPRESS_GRACEFUL_SHUTDOWN_S": "600",
    }
    command = [sys.executable, "-m", "ctxcompress.cli", "serve", "--device", "cpu", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"ctxcompress serve did not become ready: {process.stdout.read() if process.stdout else ''}")
    yield url, process
    if process.poll() is None:
        process.kill()
        process.wait(30)


def nq_request(row: dict, docs: int = 4) -> dict:
    gold = gold_index(row)
    documents = nq_documents(row)
    keep = sorted({gold, *range(docs - 1)})[:docs]
    return {
        "method": "longllmlingua",
        "documents": [documents[i] for i in keep],
        "question": row["question"],
        "budget": {"rate": 0.4},
    }


def test_real_model_compress_then_graceful_sigterm(served) -> None:  # noqa: ANN001
    url, process = served
    rows = nq_rows(2, gold=9)
    with CtxCompressClient(url, timeout=600) as client:
        result = client.compress(nq_request(rows[0]))
        assert isinstance(result, CompressionResult)
        assert result.compressed_tokens <= result.target_tokens < result.origin_tokens
        assert result.ratio > 2 and result.ranking is not None and len(result.ranking) == 4
        models = httpx.get(f"{url}/v1/models").json()["data"]
        assert next(m for m in models if m["name"] == "smollm2-135m")["loaded"] is True

    outcome: dict[str, httpx.Response] = {}
    inflight = threading.Thread(
        target=lambda: outcome.update(r=httpx.post(f"{url}/v1/compress", json=nq_request(rows[1]), timeout=600))
    )
    inflight.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the engine holds the request
        metrics = httpx.get(f"{url}/metrics").text
        if "ctxcompress_in_flight_requests 1.0" in metrics:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the request never reached the engine")
    process.send_signal(signal.SIGTERM)
    inflight.join(300)
    # uvicorn drains, then re-raises the captured SIGTERM so the exit status says what ended the process.
    assert process.wait(120) in (0, -signal.SIGTERM)
    assert outcome["r"].status_code == 200, outcome["r"].text
    assert outcome["r"].json()["compressed_tokens"] <= outcome["r"].json()["target_tokens"]
    log = process.stdout.read() if process.stdout else ""
    assert '"msg": "stopped"' in log and "Application shutdown complete" in log


def _server_workers(pid: int) -> list[str]:
    """Child processes of ``pid`` that run a server (uvicorn spawns them; its resource tracker is not one)."""
    workers = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
        except FileNotFoundError:
            continue
    return workers


def test_two_worker_processes_serve_one_port(tmp_path) -> None:  # noqa: ANN001
    """``serve --workers 2``: the supervisor runs two server processes (each its own engine and model);
    concurrent requests on the one port are all answered, every scrape of ``/metrics`` reports the sum over both
    (before, each showed one process's counters, so they jumped between scrapes), and SIGTERM stops all three."""
    port = free_port()
    env = os.environ | {"HF_HUB_OFFLINE": "1", "CTXCOMPRESS_WARMUP": "false", "CTXCOMPRESS_REQUEST_TIMEOUT_S": "600"}
    command = [sys.executable, "-m", "ctxcompress.cli", "serve", "--device", "cpu", "--port", str(port)]
    command += ["--workers", "2"]
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if len(_server_workers(process.pid)) == 2 and httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"no two ready workers: {(tmp_path / 'serve.log').read_text()[-3000:]}")
        rows = nq_rows(4, gold=9)
        results: list[CompressionResult] = []

        def call(row: dict) -> None:
            with CtxCompressClient(url, timeout=600) as client:
                results.append(client.compress(nq_request(row, docs=3)))

        threads = [threading.Thread(target=call, args=(row,)) for row in rows]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        assert len(results) == 4
        assert all(r.compressed_tokens <= r.target_tokens < r.origin_tokens for r in results)
        # Every scrape reports both processes' sums, whichever answers (prometheus-client multiprocess mode).
        with httpx.Client(base_url=url, timeout=60, headers={"connection": "close"}) as client:
            for _ in range(INFO_CALLS):
                assert client.get("/v1/methods").status_code == 200
            time.sleep(2.5)  # each worker copies its engine figures into the shared files once a second
            for _ in range(8):  # new connections: the scrapes spread over the workers
                scraped = client.get("/metrics").text
                assert (
                    metric(scraped, "ctxcompress_http_requests_total", route="/v1/methods", status="200") == INFO_CALLS
                )
                assert metric(scraped, "ctxcompress_engine_requests_total") == len(rows)
                stats = client.get("/v1/stats").json()  # the savings report sums both workers too
                assert stats["total"]["compressions"] == len(rows)
                assert stats["total"]["origin_tokens"] == sum(r.origin_tokens for r in results)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("supervisor did not stop on SIGTERM")
