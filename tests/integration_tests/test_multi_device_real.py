"""``ctxcompress serve --device cpu,cpu,cpu`` in a fresh interpreter (transformers not yet imported) on the real
SmolLM2-135M: every device prepares its model (no import or load race between the device threads), ``/readyz``
lists the three devices, and three concurrent requests (one batch each, so each device runs one) succeed.

Before the fix, three device threads loading at once in a fresh interpreter failed almost every time
(``ImportError: cannot import name 'AutoModelForCausalLM' from 'transformers'``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import nq_documents, nq_rows
from tests.reliability.server import free_port

pytestmark = pytest.mark.real_model
ROOT = Path(__file__).resolve().parents[2]
DEVICES = 3


@pytest.fixture()
def served(tmp_path: Path):  # noqa: ANN201
    port = free_port()
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "CTXCOMPRESS_WARMUP": "false",
        "CTXCOMPRESS_PRELOAD_MODELS": "smollm2-135m",
        "CTXCOMPRESS_MAX_BATCH_REQUESTS": "1",  # one batch per request: concurrent requests spread over devices
        "CTXCOMPRESS_REQUEST_TIMEOUT_S": "120",
    }
    command = [sys.executable, "-m", "ctxcompress.cli", "serve", "--device", ",".join(["cpu"] * DEVICES)]
    command += ["--port", str(port)]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}", process, log_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def wait_ready(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float) -> dict:
    """The ``/readyz`` body once it is 200; fails at once when preparation failed or the process died."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited ({process.returncode}): {log_path.read_text(errors='replace')[-3000:]}")
        try:
            response = httpx.get(f"{url}/readyz", timeout=5)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code == 200:
            return response.json()
        last = response.text
        if "preparation failed" in last:
            pytest.fail(f"model preparation failed: {last}")
        time.sleep(0.2)
    pytest.fail(f"not ready within {timeout_s:g} s: {last}")


def test_three_devices_prepare_and_serve_concurrent_requests(served) -> None:  # noqa: ANN001
    url, process, log_path = served
    started = time.monotonic()
    ready = wait_ready(url, process, log_path, timeout_s=45)
    ready_s = time.monotonic() - started
    assert ready["devices"] == ["cpu"] * DEVICES
    assert "scorer:smollm2-135m" in ready["loaded"]

    responses: dict[int, httpx.Response] = {}

    def call(i: int, row: dict) -> None:
        payload = {
            "method": "llmlingua",
            "documents": [d[:300] for d in nq_documents(row)[:3]],
            "question": row["question"],
            "budget": {"rate": 0.5},
        }
        responses[i] = httpx.post(f"{url}/v1/compress", json=payload, timeout=120)

    callers = [threading.Thread(target=call, args=(i, row)) for i, row in enumerate(nq_rows(DEVICES))]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(120)
    assert sorted(responses) == list(range(DEVICES))
    for response in responses.values():
        assert response.status_code == 200, response.text
        result = response.json()
        assert 0 < result["compressed_tokens"] <= result["target_tokens"] < result["origin_tokens"]
    metrics = httpx.get(f"{url}/metrics").text
    assert f"ctxcompress_batch_size_count {float(DEVICES)}" in metrics  # three batches, one request each
    assert ready_s < 45
