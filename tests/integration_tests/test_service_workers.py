"""``ctxcompress serve --workers 2``: every scrape of ``/metrics`` reports the sum over both worker processes,
whichever worker answers it (before, each scrape showed one process's counters, so they jumped between scrapes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.integration_tests.test_service_real import free_port
from tests.unit_tests.test_service_http import metric

ROOT = Path(__file__).resolve().parents[2]
INFO_CALLS = 24
COMPRESS_CALLS = 10  # within budget (rate 1.0): answered by the engine without loading a model


def test_two_workers_scrape_as_one_service(tmp_path) -> None:  # noqa: ANN001
    port = free_port()
    env = os.environ | {"HF_HUB_OFFLINE": "1", "CTXCOMPRESS_PRELOAD_MODELS": "", "CTXCOMPRESS_WARMUP": "false"}
    command = [
        sys.executable,
        "-m",
        "ctxcompress.cli",
        "serve",
        "--device",
        "cpu",
        "--workers",
        "2",
        "--port",
        str(port),
    ]
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        ready = 0
        while time.monotonic() < deadline and ready < 6:  # several 200s in a row: both workers are up
            try:
                ready = ready + 1 if httpx.get(f"{url}/readyz", timeout=5).status_code == 200 else 0
            except httpx.TransportError:
                ready = 0
            time.sleep(0.5)
        assert ready >= 6, (tmp_path / "serve.log").read_text()
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(INFO_CALLS):
                client.headers["connection"] = "close"  # new connections spread over the workers
                assert client.get("/v1/methods").status_code == 200
            request = {"documents": ["The Nile flows north."], "question": "Which way?", "budget": {"rate": 1.0}}
            for _ in range(COMPRESS_CALLS):
                assert client.post("/v1/compress", json=request).status_code == 200
            time.sleep(2.5)  # each worker copies its engine figures into the shared files once a second
            for _ in range(8):
                scraped = client.get("/metrics").text
                routes = metric(scraped, "ctxcompress_http_requests_total", route="/v1/methods", status="200")
                assert routes == INFO_CALLS
                assert metric(scraped, "ctxcompress_engine_requests_total") == COMPRESS_CALLS
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
