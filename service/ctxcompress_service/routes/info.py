"""``GET /v1/methods``, ``/v1/models``, ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ctxcompress.errors import EngineUnavailable
from ctxcompress.methods import method_class, method_names
from ctxcompress_service.auth import require_api_key
from ctxcompress_service.errors import ERROR_RESPONSES
from ctxcompress_service.protocol import (
    ErrorResponse,
    HealthResponse,
    MethodInfo,
    MethodsResponse,
    ModelInfo,
    ModelsResponse,
)

__all__ = ["router", "ops_router"]

router = APIRouter(tags=["info"], dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES)
ops_router = APIRouter(tags=["ops"])


@router.get("/v1/methods", response_model=MethodsResponse, summary="Methods and their options with defaults")
async def methods(request: Request) -> MethodsResponse:
    settings = request.app.state.settings
    infos = []
    for name in method_names():
        cls = method_class(name)
        schema = cls.options_model.model_json_schema()
        infos.append(MethodInfo(name=name, summary=cls.summary, needs_question=cls.needs_question, options=schema))
    return MethodsResponse(
        default_method=settings.default_method, default_budget=settings.default_budget, methods=infos
    )


@router.get("/v1/models", response_model=ModelsResponse, summary="Configured models (requests pick by name)")
async def models(request: Request) -> ModelsResponse:
    engine = request.app.state.engine
    registry = engine.compressors[0].pool.registry
    loaded = {entry.split(":", 1)[1] for c in engine.compressors for entry in c.pool.loaded()}
    data = []
    for name in registry.names():
        spec = registry.spec(name)
        data.append(ModelInfo(name=name, kind=spec.kind, description=spec.description, loaded=name in loaded))
    return ModelsResponse(data=data)


@ops_router.get("/healthz", response_model=HealthResponse, summary="Liveness")
async def healthz() -> HealthResponse:
    return HealthResponse()


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
    loaded = sorted({entry for c in state.engine.compressors for entry in c.pool.loaded()})
    return HealthResponse(devices=state.engine.devices, loaded=loaded)


@ops_router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
