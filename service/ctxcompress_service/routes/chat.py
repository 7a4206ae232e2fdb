"""``POST /v1/chat/completions``: the OpenAI-compatible compressing proxy."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ctxcompress_service.auth import require_api_key
from ctxcompress_service.errors import ERROR_RESPONSES
from ctxcompress_service.protocol import ChatCompletionRequest, ErrorResponse

__all__ = ["router"]

router = APIRouter(tags=["proxy"], dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES)


@router.post(
    "/v1/chat/completions",
    summary="Compress the context in the messages, then forward to the configured upstream",
    responses={
        200: {"description": "the upstream's response (JSON, or SSE when stream=true), passed through"},
        502: {"model": ErrorResponse, "description": "upstream unreachable"},
        503: {"model": ErrorResponse, "description": "no upstream configured, or overloaded"},
    },
    response_class=Response,
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    return await request.app.state.proxy.handle(body, request)
