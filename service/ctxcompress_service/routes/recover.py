"""``POST /v1/recover``: LongLLMLingua's subsequence recovery over REST (``ctxcompress.recover``)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from ctxcompress import recover as recover_text
from ctxcompress_service.auth import require_api_key
from ctxcompress_service.errors import ERROR_RESPONSES
from ctxcompress_service.protocol import RecoverRequest, RecoverResponse

__all__ = ["router"]

router = APIRouter(tags=["compress"], dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES)


@router.post(
    "/v1/recover",
    response_model=RecoverResponse,
    summary="Map fragments of a compressed prompt quoted in an LLM response back to the original text",
)
async def recover(body: RecoverRequest) -> RecoverResponse:
    # Word matching over long texts takes CPU time: off the event loop.
    recovered = await asyncio.to_thread(recover_text, body.original, body.compressed, body.response)
    return RecoverResponse(response=recovered)
