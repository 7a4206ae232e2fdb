"""The container image's entrypoint (``deploy/entrypoint.sh``), run directly with the test venv on PATH: CI machines
have no container runtime (the image itself was built and run with podman on the dev VM: deploy/README.md)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import nq_documents, nq_rows
from tests.reliability.server import free_port

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
pytestmark = pytest.mark.real_model


def entrypoint_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env['PATH']}"
    return env | {"CTXCOMPRESS_DEVICE": "cpu", "CTXCOMPRESS_WARMUP": "false"} | extra


def test_the_image_files_agree() -> None:
    """Every path the Dockerfile copies exists; it bakes the models, drops root and checks readiness as compose does."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", dockerfile, flags=re.M):
        *sources, _ = line.split()
        assert all((ROOT / source).exists() for source in sources), line
    assert "ctxcompress models prepare smollm2-135m minilm-l6" in dockerfile
    assert re.search(r"^USER 10001$", dockerfile, flags=re.M)
    assert '"ctxcompress-entrypoint", "--ready"' in (ROOT / "deploy" / "compose.yaml").read_text()
    assert os.access(ENTRYPOINT, os.X_OK)


def test_missing_models_stop_the_container_with_a_clear_error(tmp_path) -> None:  # noqa: ANN001
    run = subprocess.run(
        [str(ENTRYPOINT)],
        env=entrypoint_env(CTXCOMPRESS_HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 78
    assert "models not baked into the image: smollm2-135m" in run.stderr


def test_the_entrypoint_serves_and_reports_readiness(tmp_path) -> None:  # noqa: ANN001
    port = str(free_port())
    env = entrypoint_env(CTXCOMPRESS_PORT=port)
    ready = [str(ENTRYPOINT), "--ready"]
    before = subprocess.run(ready, env=env, capture_output=True, text=True, timeout=60)
    assert before.returncode == 1 and "not ready" in before.stderr  # nothing listening yet
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([str(ENTRYPOINT)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while subprocess.run(ready, env=env, capture_output=True, timeout=60).returncode != 0:
            assert server.poll() is None, Path(log.name).read_text()[-3000:]
            assert time.monotonic() < deadline, "not ready in 300 s"
            time.sleep(1)
        row = nq_rows(1, gold=4)[0]
        body = {"documents": nq_documents(row)[:5], "question": row["question"], "budget": {"rate": 0.3}}
        response = httpx.post(f"http://127.0.0.1:{port}/v1/compress", json=body, timeout=300)
        assert response.status_code == 200, response.text
        assert response.json()["compressed_tokens"] < response.json()["origin_tokens"]
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its graceful shutdown
    assert "Application shutdown complete" in Path(log.name).read_text()  # exec'd: SIGTERM reached the server
