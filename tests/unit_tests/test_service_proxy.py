"""The OpenAI-compatible compressing proxy against a fake OpenAI backend on another loopback port."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from ctxcompress_service import Settings, build_app, build_engine
from ctxcompress_service.testing import ServiceThread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ctxcompress import Compressor
from ctxcompress.pool import ModelPool

DOCS = [
    "The Nile is a major north-flowing river in northeastern Africa and flows into the Mediterranean Sea.",
    "Paris is the capital and most populous city of France, on the river Seine.",
    "The Amazon in South America is the largest river by discharge volume of water in the world.",
]
QUESTION = "Which river flows into the Mediterranean?"
SSE_WORDS = ["The ", "Nile", "."]


def fake_openai() -> FastAPI:
    """Records what it receives; answers JSON, or SSE chunks when ``stream`` is true."""
    app = FastAPI()
    app.state.received = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request):  # noqa: ANN202
        body = await request.json()
        app.state.received.append((body, dict(request.headers)))
        if body["model"].startswith("status-"):  # an upstream error, as OpenAI shapes it, with a cookie and a challenge
            status = int(body["model"].removeprefix("status-"))
            error = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
            headers = {"set-cookie": "session=upstream-secret", "www-authenticate": "Bearer", "x-request-id": "up-1"}
            return JSONResponse(error, status_code=status, headers=headers)
        if body.get("stream"):

            async def events():  # noqa: ANN202
                for word in SSE_WORDS:
                    yield f"data: {json.dumps({'choices': [{'delta': {'content': word}}]})}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return {"object": "chat.completion", "choices": [{"message": {"role": "assistant", "content": "The Nile."}}]}

    return app


@pytest.fixture(scope="module")
def upstream():  # noqa: ANN201
    app = fake_openai()
    with ServiceThread(app) as service:
        yield service, app.state.received


@pytest.fixture()
def proxy(tiny_scorer, upstream):  # noqa: ANN001, ANN201
    pool = ModelPool(device="cpu")
    pool.register("scorer", "smollm2-135m", tiny_scorer)
    settings = Settings(
        _env_file=None,
        device=["cpu"],
        preload_models=[],
        warmup=False,
        default_method="llmlingua",
        upstream_url=f"{upstream[0].url}/v1/",
        upstream_api_key="sk-upstream",
        proxy_min_tokens=0,  # these tests compress a few short documents
    )
    upstream[1].clear()
    app = build_app(settings, engine_factory=lambda s: build_engine(s, [Compressor(pool=pool)]))
    with ServiceThread(app) as service:
        yield service.url, upstream[1]


def chat_body(**overrides: object) -> dict:
    return {
        "model": "gpt-x",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "\n\n".join([*DOCS, QUESTION])},
        ],
    } | overrides


def test_proxy_compresses_last_user_message_and_forwards(proxy) -> None:  # noqa: ANN001
    url, received = proxy
    body = chat_body(ctxcompress={"budget": {"rate": 0.5}})
    caller = {"authorization": "Bearer caller"}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, headers=caller, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "The Nile."
    origin = int(response.headers["x-ctxcompress-origin-tokens"])
    compressed = int(response.headers["x-ctxcompress-compressed-tokens"])
    assert 0 < compressed <= origin // 2 + 1
    forwarded, headers = received[-1]
    assert "ctxcompress" not in forwarded and forwarded["temperature"] == 0.2 and forwarded["model"] == "gpt-x"
    assert headers["authorization"] == "Bearer sk-upstream"
    assert forwarded["messages"][:3] == body["messages"][:3]  # system and earlier turns untouched
    last = forwarded["messages"][3]
    assert last["role"] == "user" and last["content"].endswith(QUESTION)
    assert len(last["content"]) < len(body["messages"][3]["content"])


def test_proxy_streams_sse_through(proxy) -> None:  # noqa: ANN001
    url, received = proxy
    body = chat_body(stream=True, ctxcompress={"documents": DOCS, "question": QUESTION, "budget": {"max_tokens": 30}})
    body["messages"][3]["content"] = QUESTION
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert int(response.headers["x-ctxcompress-compressed-tokens"]) <= 30
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    words = [json.loads(e[6:])["choices"][0]["delta"]["content"] for e in events[:-1]]
    assert words == SSE_WORDS and events[-1] == "data: [DONE]"
    forwarded, _ = received[-1]
    assert forwarded["stream"] is True and forwarded["messages"][3]["content"].endswith(QUESTION)


def test_proxy_passes_untouched_when_nothing_to_compress(proxy) -> None:  # noqa: ANN001
    url, received = proxy
    for body in (chat_body(ctxcompress={"enabled": False}), chat_body(messages=[{"role": "user", "content": "Hi"}])):
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 200 and response.headers["x-ctxcompress-origin-tokens"] == "0"
        assert received[-1][0]["messages"] == body["messages"]


def test_proxy_errors(proxy, tiny_scorer) -> None:  # noqa: ANN001
    url, _ = proxy
    bad = httpx.post(f"{url}/v1/chat/completions", json=chat_body(ctxcompress={"method": "nope"}))
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "method"
    unknown = httpx.post(f"{url}/v1/chat/completions", json=chat_body(ctxcompress={"rate": 0.5}))
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "ctxcompress.rate"
    assert httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "messages": []}).status_code == 422

    pool = ModelPool(device="cpu")
    pool.register("scorer", "smollm2-135m", tiny_scorer)
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    secret_url = f"http://admin:hunter2@127.0.0.1:{dead}/v1?token=abc"
    cases = [(None, 503, "UpstreamNotConfigured"), (secret_url, 502, "UpstreamError")]
    for upstream_url, status, kind in cases:
        settings = Settings(_env_file=None, device=["cpu"], preload_models=[], warmup=False, upstream_url=upstream_url)
        app = build_app(settings, engine_factory=lambda s: build_engine(s, [Compressor(pool=pool)]))
        with ServiceThread(app) as service:
            response = httpx.post(f"{service.url}/v1/chat/completions", json=chat_body(), timeout=60)
        assert response.status_code == status and response.json()["error"]["type"] == kind
        assert not {"hunter2", "admin", "token", str(dead)} & set(response.text.replace('"', " ").split())
        assert "hunter2" not in response.text and "token=abc" not in response.text


def test_short_chats_code_and_tight_budgets_pass_untouched(proxy, tiny_scorer, upstream) -> None:  # noqa: ANN001
    url, received = proxy
    code = "def f(x):\n    return x\n\n\nprint(f(1))\n\nWhat does this print?"
    greeting = "Hi there\n\nHow are you?"  # rate 0.5 of 5 tokens cannot hold the question
    for content, reason in ((code, "code"), (greeting, "budget")):
        body = chat_body(messages=[{"role": "user", "content": content}])
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 200, response.text
        assert response.headers["x-ctxcompress-skipped"] == reason
        assert received[-1][0]["messages"] == body["messages"]

    pool = ModelPool(device="cpu")  # the default size threshold: a short chat is not worth compressing
    pool.register("scorer", "smollm2-135m", tiny_scorer)
    settings = Settings(
        _env_file=None, device=["cpu"], preload_models=[], warmup=False, upstream_url=f"{upstream[0].url}/v1"
    )
    app = build_app(settings, engine_factory=lambda s: build_engine(s, [Compressor(pool=pool)]))
    with ServiceThread(app) as service:
        response = httpx.post(f"{service.url}/v1/chat/completions", json=chat_body(), timeout=60)
    assert response.status_code == 200 and response.headers["x-ctxcompress-skipped"] == "small"
    assert received[-1][0]["messages"] == chat_body()["messages"]


def test_upstream_errors_are_marked_and_lose_cookies(proxy) -> None:  # noqa: ANN001
    url, _ = proxy
    for status in (401, 429, 500):
        response = httpx.post(f"{url}/v1/chat/completions", json=chat_body(model=f"status-{status}"), timeout=60)
        assert response.status_code == status
        assert response.json()["error"]["message"] == "Incorrect API key provided"  # the body the SDKs parse
        assert response.headers["x-ctxcompress-upstream-status"] == str(status)
        assert "set-cookie" not in response.headers and "www-authenticate" not in response.headers
    ok = httpx.post(f"{url}/v1/chat/completions", json=chat_body(), timeout=60)
    assert ok.headers["x-ctxcompress-upstream-status"] == "200" and "x-ctxcompress-skipped" not in ok.headers


def test_an_operator_key_without_service_keys_is_warned_about(caplog, tiny_scorer) -> None:  # noqa: ANN001
    pool = ModelPool(device="cpu")
    pool.register("scorer", "smollm2-135m", tiny_scorer)
    settings = Settings(
        _env_file=None,
        device=["cpu"],
        preload_models=[],
        warmup=False,
        upstream_url="http://127.0.0.1:9/v1",
        upstream_api_key="sk-operator",
    )
    app = build_app(settings, engine_factory=lambda s: build_engine(s, [Compressor(pool=pool)]))
    with caplog.at_level("WARNING", logger="ctxcompress.service"), ServiceThread(app):
        pass
    assert any("spends the operator's upstream key" in r.getMessage() for r in caplog.records)
