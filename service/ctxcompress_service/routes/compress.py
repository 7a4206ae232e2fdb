"""``POST /v1/compress`` and ``POST /v1/compress/batch``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from ctxcompress.errors import PayloadTooLarge
from ctxcompress_service.auth import caller_key_name, require_api_key
from ctxcompress_service.disconnect import cancel_on_disconnect
from ctxcompress_service.errors import ERROR_RESPONSES, error_detail
from ctxcompress_service.protocol import BatchItem, BatchResponse, CompressionRequest, CompressionResult
from ctxcompress_service.settings import Settings

__all__ = ["router", "with_defaults"]

router = APIRouter(tags=["compress"], dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES)

# Items are validated one by one: an item that is not a valid CompressionRequest gets its own error in the
# results (the batch is still 200), so the body schema admits any item and says so.
_BATCH_SCHEMA = {
    "type": "array",
    "items": {
        "anyOf": [{"$ref": "#/components/schemas/CompressionRequest"}, {}],
        "description": "a CompressionRequest; an item that is not a valid one gets its own error in `results`",
    },
}


def with_defaults(item: Any, settings: Settings) -> Any:
    """Fill ``method``/``budget`` from the service defaults when the request leaves them out."""
    defaults = {"method": settings.default_method, "budget": settings.default_budget}
    if isinstance(item, CompressionRequest):
        return item.model_copy(update={k: v for k, v in defaults.items() if k not in item.model_fields_set})
    if isinstance(item, dict):
        return {"method": defaults["method"], "budget": settings.default_budget.model_dump(exclude_none=True)} | item
    return item


@router.post("/v1/compress", response_model=CompressionResult, summary="Compress one request")
async def compress(body: CompressionRequest, request: Request) -> CompressionResult:
    state = request.app.state
    result = await cancel_on_disconnect(request, state.engine.compress(with_defaults(body, state.settings)))
    state.metrics.observe_result(result, caller_key_name(request))
    request.state.log_fields = {"origin_tokens": result.origin_tokens, "compressed_tokens": result.compressed_tokens}
    return result


@router.post(
    "/v1/compress/batch",
    response_model=BatchResponse,
    summary="Compress a list of requests; each item gets its result or its own error",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _BATCH_SCHEMA}}}},
)
async def compress_batch(request: Request, body: Annotated[list[Any], Body()]) -> BatchResponse:
    state = request.app.state
    if len(body) > state.settings.max_batch_items:
        raise PayloadTooLarge(f"{len(body)} requests in one batch; the limit is {state.settings.max_batch_items}")
    items = [with_defaults(item, state.settings) for item in body]
    outputs = await cancel_on_disconnect(request, state.engine.compress_many(items))
    results, key, origin, compressed = [], caller_key_name(request), 0, 0
    for out in outputs:
        if isinstance(out, CompressionResult):
            state.metrics.observe_result(out, key)
            origin, compressed = origin + out.origin_tokens, compressed + out.compressed_tokens
            results.append(BatchItem(result=out))
        else:
            results.append(BatchItem(error=error_detail(out)))
    request.state.log_fields = {"origin_tokens": origin, "compressed_tokens": compressed}  # the key's token quota
    return BatchResponse(results=results)
