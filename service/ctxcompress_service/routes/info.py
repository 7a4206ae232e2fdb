"""``GET /v1/methods``, ``/v1/models``, ``/v1/stats``, ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from ctxcompress.errors import EngineUnavailable
from ctxcompress.serving.protocol import EngineClient
from ctxcompress_service.auth import caller_key, require_api_key
from ctxcompress_service.errors import ERROR_RESPONSES
from ctxcompress_service.protocol import (
    ErrorResponse,
    HealthResponse,
    MethodInfo,
    MethodsResponse,
    ModelInfo,
    ModelsResponse,
    Savings,
    StatsResponse,
)

__all__ = ["router", "ops_router"]

router = APIRouter(tags=["info"], dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES)
ops_router = APIRouter(tags=["ops"])


@router.get("/v1/methods", response_model=MethodsResponse, summary="Methods and their options with defaults")
async def methods(request: Request) -> MethodsResponse:
    settings = request.app.state.settings
    infos = [
        MethodInfo(name=m.name, summary=m.summary, needs_question=m.needs_question, options=m.options_schema)
        for m in request.app.state.engine.methods()
    ]
    return MethodsResponse(
        default_method=settings.default_method, default_budget=settings.default_budget, methods=infos
    )


@router.get("/v1/models", response_model=ModelsResponse, summary="Configured models (requests pick by name)")
async def models(request: Request) -> ModelsResponse:
    data = [
        ModelInfo(name=m.name, kind=m.kind, description=m.description, loaded=m.loaded)
        for m in request.app.state.engine.models()
    ]
    return ModelsResponse(data=data)


def _savings(compressions: int, origin: int, compressed: int, saved: int) -> Savings:
    fraction = round(saved / origin, 4) if origin else 0.0
    return Savings(
        compressions=compressions,
        origin_tokens=origin,
        compressed_tokens=compressed,
        saved_tokens=saved,
        saved_fraction=fraction,
    )


@router.get("/v1/stats", response_model=StatsResponse, summary="Tokens saved per API key and method since start")
async def stats(request: Request) -> StatsResponse:
    key = caller_key(request)
    table = request.app.state.metrics.savings()
    if key is not None and not key.sees_all_stats:
        table = {name: rows for name, rows in table.items() if name == key.name}
    keys: dict[str, dict[str, Savings]] = {}
    sums = [0, 0, 0, 0]
    for name, methods in sorted(table.items()):
        for method, row in sorted(methods.items()):
            values = [row.get(f, 0) for f in ("compressions", "origin", "compressed", "saved")]
            keys.setdefault(name, {})[method] = _savings(*values)
            sums = [a + b for a, b in zip(sums, values, strict=True)]
    return StatsResponse(started_at=request.app.state.metrics.started_at, total=_savings(*sums), keys=keys)


def _engine_state(engine: EngineClient | None) -> HealthResponse:
    """Devices and loaded engines: the same facts on ``/healthz`` and ``/readyz``."""
    if engine is None:
        return HealthResponse()
    return HealthResponse(devices=engine.devices, loaded=engine.loaded())


@ops_router.get("/healthz", response_model=HealthResponse, summary="Liveness (the process answers)")
async def healthz(request: Request) -> HealthResponse:
    return _engine_state(request.app.state.engine)


@ops_router.get(
    "/readyz",
    response_model=HealthResponse,
    summary="Readiness: engine running, models loaded",
    responses={503: {"model": ErrorResponse, "description": "not ready (loading, failed, shutting down)"}},
)
async def readyz(request: Request) -> HealthResponse:
    state = request.app.state
    state.engine.check_health()
    if not state.ready:
        raise EngineUnavailable(state.not_ready_reason, retry_after_s=5.0)
    return _engine_state(state.engine)


@ops_router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
