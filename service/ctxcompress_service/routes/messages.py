"""``POST /v1/messages``: the Anthropic Messages-compatible compressing proxy.

Errors on this route have the Anthropic shape (``errors.py`` formats them by path), so the Anthropic SDKs raise
their usual exceptions. Keys are checked by ``ApiKeyMiddleware`` (``x-api-key`` or Bearer).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ctxcompress_service.anthropic_proxy import ANTHROPIC_PATH
from ctxcompress_service.protocol import AnthropicMessagesRequest

__all__ = ["router"]

router = APIRouter(tags=["proxy"])


@router.post(
    ANTHROPIC_PATH,
    summary="Compress the context in the messages, then forward to the configured Anthropic-compatible upstream",
    responses={
        200: {"description": "the upstream's response (JSON, or SSE when stream=true), passed through"},
        **{
            status: {"description": f"{text} (Anthropic error shape: {{type: error, error: {{type, message}}}})"}
            for status, text in {
                401: "API key missing",
                403: "API key not valid",
                408: "request stalled",
                413: "request too large",
                415: "not a JSON body",
                422: "invalid request",
                429: "over quota or overloaded",
                500: "internal error",
                502: "upstream unreachable",
                503: "no upstream configured, or not ready",
                504: "timed out",
            }.items()
        },
    },
    response_class=Response,
)
async def messages(body: AnthropicMessagesRequest, request: Request) -> Response:
    return await request.app.state.anthropic_proxy.handle(body, request)
