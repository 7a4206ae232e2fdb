"""The LiteLLM guardrail the way its users run it: a real ``litellm`` proxy (its own venv, ``.venv-litellm``, made
by ``scripts/setup_litellm.sh``) with ``litellm_ctxcompress.CtxCompressGuardrail`` in its config, a ctxcompress
service on the real embedded models, and a fake OpenAI upstream, all on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from ctxcompress_service import Settings, build_app
from ctxcompress_service.testing import ServiceThread
from fastapi import FastAPI, Request

from ctxcompress.text.tokens import get_target_tokenizer
from tests.conftest import nq_documents, nq_rows
from tests.reliability.server import free_port

ROOT = Path(__file__).resolve().parents[2]
LITELLM = ROOT / ".venv-litellm" / "bin" / "litellm"
MASTER_KEY = "sk-litellm-master"
pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(not LITELLM.exists(), reason="no .venv-litellm (scripts/setup_litellm.sh makes it)"),
]


def fake_openai() -> FastAPI:
    """An OpenAI chat endpoint that records every body it receives and answers one fixed completion."""
    app = FastAPI()
    app.state.received = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict:
        body = await request.json()
        app.state.received.append(body)
        message = {"role": "assistant", "content": "An answer."}
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        }

    return app


def litellm_config(upstream: str, service: str) -> str:
    return json.dumps(  # YAML is a superset of JSON
        {
            "model_list": [
                {
                    "model_name": "gpt-test",
                    "litellm_params": {"model": "openai/gpt-test", "api_base": f"{upstream}/v1", "api_key": "sk-up"},
                }
            ],
            "guardrails": [
                {
                    "guardrail_name": "ctxcompress",
                    "litellm_params": {
                        "guardrail": "litellm_ctxcompress.CtxCompressGuardrail",
                        "mode": "pre_call",
                        "default_on": True,
                        "api_base": service,
                        "method": "hybrid",
                        "rate": 0.25,
                        "timeout": 300,
                    },
                }
            ],
            "general_settings": {"master_key": MASTER_KEY},
        }
    )


def test_litellm_proxy_forwards_a_compressed_chat_and_fails_open(tmp_path) -> None:  # noqa: ANN001
    upstream_app = fake_openai()
    settings = Settings(_env_file=None, device=["cpu"], warmup=False, request_timeout_s=300)
    with ServiceThread(upstream_app) as upstream, ServiceThread(build_app(settings)) as service:
        config = tmp_path / "config.yaml"
        config.write_text(litellm_config(upstream.url, service.url))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
        env |= {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", "NO_DOCKER": "1"}
        log = (tmp_path / "litellm.log").open("w")
        command = [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        proxy = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 240
            while True:
                assert proxy.poll() is None, f"litellm exited: {Path(log.name).read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"litellm not ready: {Path(log.name).read_text()[-3000:]}"
                try:
                    if httpx.get(f"{url}/health/liveliness", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)

            def chat(messages: list[dict], **extra: object) -> httpx.Response:
                body = {"model": "gpt-test", "messages": messages, **extra}
                headers = {"authorization": f"Bearer {MASTER_KEY}"}
                return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=600)

            row = nq_rows(1, gold=4)[0]
            context = "\n\n".join([*nq_documents(row)[:10], row["question"]])
            earlier = [
                {"role": "system", "content": "Answer from the documents.\n\n  Keep it short."},
                {"role": "user", "content": "Hello!"},
                {"role": "assistant", "content": "Hi. Send documents and a question."},
            ]
            answered = chat([*earlier, {"role": "user", "content": context}], ctxcompress={"method": "hybrid"})
            assert answered.status_code == 200, answered.text
            assert answered.json()["choices"][0]["message"]["content"] == "An answer."
            sent = upstream_app.state.received[-1]
            assert sent["messages"][:3] == earlier  # system prompt and earlier turns byte for byte
            assert "ctxcompress" not in sent  # the override field never reaches the upstream
            tokens = get_target_tokenizer()
            compressed = sent["messages"][3]["content"]
            assert tokens.count(compressed) <= 0.25 * tokens.count(context) * 1.05 + 5
            assert row["question"] in compressed and any(a in compressed for a in row["answers"])

            greeting = [{"role": "user", "content": "Hi there, how are you?"}]
            assert chat(greeting).status_code == 200
            assert upstream_app.state.received[-1]["messages"] == greeting  # small chats pass untouched
            assert chat(greeting, ctxcompress={"method": 7}).status_code == 400  # a bad override is refused

            service.stop()  # the ctxcompress service goes away: chats are forwarded as sent
            down = chat([{"role": "user", "content": context}])
            assert down.status_code == 200
            assert upstream_app.state.received[-1]["messages"][0]["content"] == context
        finally:
            proxy.terminate()
            try:
                proxy.wait(30)
            except subprocess.TimeoutExpired:
                proxy.kill()
