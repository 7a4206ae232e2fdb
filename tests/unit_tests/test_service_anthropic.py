"""The Anthropic Messages-compatible proxy, driven by the real ``anthropic`` SDK against a fake Anthropic upstream
on another loopback port: compression of the last user turn, streaming, errors the SDK raises as usual."""

from __future__ import annotations

import json

import anthropic
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
WORDS = ["The ", "Nile", "."]
SYSTEM = [{"type": "text", "text": "Answer briefly.", "cache_control": {"type": "ephemeral"}}]
EARLIER = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


def _event(kind: str, data: dict) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"


def fake_anthropic() -> FastAPI:
    """Records what it receives; answers a Message, its SSE events, or an Anthropic-shaped error."""
    app = FastAPI()
    app.state.received = []

    @app.post("/v1/messages")
    async def messages(request: Request):  # noqa: ANN202
        body = await request.json()
        app.state.received.append((body, dict(request.headers)))
        if body["model"] == "status-401":
            error = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
            return JSONResponse(error, status_code=401, headers={"set-cookie": "session=upstream"})
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"]}
        usage = {"input_tokens": 10, "output_tokens": 3}
        if not body.get("stream"):
            content = [{"type": "text", "text": "".join(WORDS)}]
            return message | {"content": content, "stop_reason": "end_turn", "stop_sequence": None, "usage": usage}

        async def events():  # noqa: ANN202
            start = message | {"content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
            yield _event("message_start", {"message": start})
            yield _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            for word in WORDS:
                yield _event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": word}})
            yield _event("content_block_stop", {"index": 0})
            delta = {"stop_reason": "end_turn", "stop_sequence": None}
            yield _event("message_delta", {"delta": delta, "usage": {"output_tokens": 3}})
            yield _event("message_stop", {})

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def upstream():  # noqa: ANN201
    app = fake_anthropic()
    with ServiceThread(app) as service:
        yield service.url, app.state.received


@pytest.fixture()
def client(tiny_scorer, upstream):  # noqa: ANN001, ANN201
    pool = ModelPool(device="cpu")
    pool.register("scorer", "smollm2-135m", tiny_scorer)
    settings = Settings(
        _env_file=None,
        device=["cpu"],
        preload_models=[],
        warmup=False,
        default_method="llmlingua",
        anthropic_upstream_url=upstream[0],
        anthropic_upstream_api_key="sk-ant-operator",
        api_keys=["service-key"],
        proxy_min_tokens=0,  # a few short documents
    )
    upstream[1].clear()
    app = build_app(settings, engine_factory=lambda s: build_engine(s, [Compressor(pool=pool)]))
    with ServiceThread(app) as service:
        yield anthropic.Anthropic(base_url=service.url, api_key="service-key", max_retries=0), upstream[1]


def _messages() -> list[dict]:
    return [*EARLIER, {"role": "user", "content": [{"type": "text", "text": "\n\n".join([*DOCS, QUESTION])}]}]


def test_the_sdk_gets_its_message_and_the_upstream_a_compressed_last_turn(client) -> None:  # noqa: ANN001
    sdk, received = client
    raw = sdk.messages.with_raw_response.create(
        model="claude-x",
        max_tokens=64,
        system=SYSTEM,
        messages=_messages(),
        extra_body={"ctxcompress": {"budget": {"rate": 0.5}}},
    )
    message = raw.parse()
    assert message.content[0].text == "The Nile." and message.stop_reason == "end_turn"
    origin, compressed = (int(raw.headers[f"x-ctxcompress-{k}-tokens"]) for k in ("origin", "compressed"))
    assert 0 < compressed <= origin // 2 + 1 and raw.headers["x-ctxcompress-upstream-status"] == "200"
    forwarded, headers = received[-1]
    assert headers["x-api-key"] == "sk-ant-operator" and headers["anthropic-version"]  # the operator's key upstream
    assert "ctxcompress" not in forwarded and forwarded["max_tokens"] == 64
    assert forwarded["system"] == SYSTEM and forwarded["messages"][:2] == EARLIER  # untouched, byte for byte
    last = forwarded["messages"][2]["content"]
    assert len(last) == 1 and last[0]["type"] == "text" and last[0]["text"].endswith(QUESTION)
    assert len(last[0]["text"]) < len(_messages()[2]["content"][0]["text"])


def test_streaming_passes_every_event_to_the_sdk(client) -> None:  # noqa: ANN001
    sdk, received = client
    with sdk.messages.stream(model="claude-x", max_tokens=64, messages=_messages()) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "The Nile." and final.stop_reason == "end_turn"
    assert received[-1][0]["stream"] is True and received[-1][0]["messages"][-1]["content"][0]["text"].endswith(
        QUESTION
    )


def test_errors_reach_the_sdk_as_its_own_exceptions(client, upstream) -> None:  # noqa: ANN001
    sdk, _ = client
    with pytest.raises(anthropic.AuthenticationError) as upstream_401:
        sdk.messages.create(model="status-401", max_tokens=8, messages=_messages())
    assert "invalid x-api-key" in str(upstream_401.value)
    assert upstream_401.value.response.headers["x-ctxcompress-upstream-status"] == "401"
    assert "set-cookie" not in upstream_401.value.response.headers
    with pytest.raises(anthropic.UnprocessableEntityError) as bad_method:  # the service's own error, Anthropic shape
        sdk.messages.create(model="m", max_tokens=8, messages=_messages(), extra_body={"ctxcompress": {"method": "x"}})
    assert bad_method.value.body["error"]["type"] == "invalid_request_error" and "method" in str(bad_method.value)
    with pytest.raises(anthropic.UnprocessableEntityError):
        sdk.messages.create(model="m", max_tokens=0, messages=_messages())  # max_tokens must be > 0
    stranger = anthropic.Anthropic(base_url=str(sdk.base_url), api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as forbidden:
        stranger.messages.create(model="m", max_tokens=8, messages=_messages())
    assert forbidden.value.body["error"]["type"] == "permission_error"
