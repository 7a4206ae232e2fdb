"""A fake OpenAI-compatible upstream for the proxy: accepts any JSON body, answers a chat completion, or an SSE
stream of ``events`` chunks ``delay_s`` apart when ``stream`` is true; ``/v1/messages`` answers as an Anthropic
Messages API would (a message, or its SSE events). ``python -m tests.reliability.upstream
--port P`` runs it as a process (the fault drill kills it mid-stream)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

__all__ = ["fake_openai", "main"]


def fake_openai(events: int = 3, delay_s: float = 0.0) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = {}
        if isinstance(body, dict) and body.get("stream") is True:

            async def stream() -> Any:
                for i in range(events):
                    yield f"data: {json.dumps({'choices': [{'delta': {'content': f'w{i} '}}]})}\n\n"
                    await asyncio.sleep(delay_s)
                yield "data: [DONE]\n\n"

            return StreamingResponse(stream(), media_type="text/event-stream")
        message = {"role": "assistant", "content": "ok"}
        return JSONResponse({"object": "chat.completion", "choices": [{"index": 0, "message": message}]})

    @app.post("/v1/messages")
    async def messages(request: Request) -> Any:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = {}
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "fake", "stop_sequence": None}
        usage = {"input_tokens": 1, "output_tokens": 1}
        if isinstance(body, dict) and body.get("stream") is True:

            async def stream() -> Any:
                start = message | {"content": [], "stop_reason": None, "usage": usage}
                yield f"event: message_start\ndata: {json.dumps({'type': 'message_start', 'message': start})}\n\n"
                yield f"event: message_stop\ndata: {json.dumps({'type': 'message_stop'})}\n\n"

            return StreamingResponse(stream(), media_type="text/event-stream")
        content = [{"type": "text", "text": "ok"}]
        return JSONResponse(message | {"content": content, "stop_reason": "end_turn", "usage": usage})

    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--delay-s", type=float, default=0.1)
    args = parser.parse_args(argv)
    uvicorn.run(fake_openai(args.events, args.delay_s), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
