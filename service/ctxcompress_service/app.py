"""build_app(settings): the FastAPI app. The lifespan owns the engine: start, preload/warm up, drain on exit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import torch
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

import ctxcompress
from ctxcompress.compressor import Compressor
from ctxcompress.models import ModelRegistry
from ctxcompress.serving.engine import AsyncCompressionEngine
from ctxcompress.serving.protocol import EngineClient
from ctxcompress_service.anthropic_proxy import AnthropicProxy
from ctxcompress_service.balance import ConnectionBalancer, PeerLoad
from ctxcompress_service.docs import install_docs
from ctxcompress_service.errors import install_error_handlers
from ctxcompress_service.keys import KeyRing
from ctxcompress_service.metrics import Metrics
from ctxcompress_service.middleware import ApiKeyMiddleware, BodyLimitMiddleware, ObservabilityMiddleware
from ctxcompress_service.playground import install_playground
from ctxcompress_service.proxy import ChatProxy
from ctxcompress_service.routes import chat, compress, info, messages, recover
from ctxcompress_service.schema_constraints import install_request_constraints
from ctxcompress_service.settings import Settings

__all__ = ["app_from_env", "build_app", "build_engine"]

logger = logging.getLogger("ctxcompress.service")

EngineFactory = Callable[[Settings], EngineClient]

_WARMUP_DOCUMENTS = [
    "The Nile is a major north-flowing river in northeastern Africa; it flows into the Mediterranean Sea.",
    "The Amazon River in South America is the largest river by discharge volume of water in the world.",
    "The Danube flows through Central and Eastern Europe, from the Black Forest into the Black Sea.",
]


def build_engine(settings: Settings, compressors: list[Compressor] | None = None) -> AsyncCompressionEngine:
    """The engine sized by the settings: one Compressor per configured device, or the given ``compressors``. Sets
    this process's torch CPU threads (``Settings.torch_threads``) first."""
    torch.set_num_threads(settings.torch_thread_count())
    return AsyncCompressionEngine(
        compressors,
        devices=settings.device,
        options=settings.serving_options(),
        engine_options=settings.engine_options(),
        registry=ModelRegistry(convert_on_first_use=False),
    )


async def _prepare_models(app: FastAPI, settings: Settings, engine: EngineClient) -> None:
    """Load the configured models on every device, then warm up with one real compression per device (and on
    GPUs the profile batch at the serving limits)."""
    try:
        await engine.load_models(list(settings.preload_models))
        if settings.warmup:
            question = "Which river flows into the Mediterranean?"
            request = {
                "method": settings.default_method,
                "documents": _WARMUP_DOCUMENTS,
                "question": question,
                "budget": {"rate": 0.5},
            }
            profile_method = settings.default_method if settings.profile_batch else None
            await engine.warmup([request], profile_method=profile_method)
        app.state.ready = True
        logger.info("ready", extra={"devices": engine.devices, "models": list(settings.preload_models)})
    except Exception as exc:  # the service stays up (healthz) and reports why it is not ready
        app.state.not_ready_reason = f"model preparation failed: {type(exc).__name__}: {exc}"
        logger.exception("model preparation failed")


async def _sync_metrics(metrics: Metrics, peers: PeerLoad, period_s: float = 1.0) -> None:
    """Each worker process, once a second: its engine figures into the shared metric files, its peers' mean load
    out of them (for the ConnectionBalancer)."""
    while True:
        metrics.sync()
        peers.mean_in_flight = metrics.mean_in_flight()
        await asyncio.sleep(period_s)


def app_from_env() -> FastAPI:
    """The app configured from ``CTXCOMPRESS_*`` alone (each ``--workers`` process calls this)."""
    return build_app(Settings())


def build_app(settings: Settings | None = None, *, engine_factory: EngineFactory | None = None) -> FastAPI:
    """The service app. ``engine_factory(settings)`` builds the engine at startup (tests inject tiny models)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        operator_keys = (settings.upstream_url and settings.upstream_api_key is not None) or (
            settings.anthropic_upstream_url and settings.anthropic_upstream_api_key is not None
        )
        if operator_keys and not app.state.keyring.enabled:
            logger.warning(
                "the proxy forwards with the operator's upstream API key and CTXCOMPRESS_API_KEYS is empty: any caller "
                "that reaches this port spends the operator's upstream key; set CTXCOMPRESS_API_KEYS"
            )
        engine = (engine_factory or build_engine)(settings)
        app.state.engine = engine
        app.state.ready = False
        app.state.not_ready_reason = "models are loading"
        await engine.start()
        client = httpx.AsyncClient(timeout=httpx.Timeout(settings.upstream_timeout_s, connect=10.0))
        keys = app.state.keyring.enabled
        app.state.proxy = ChatProxy(settings, engine, app.state.metrics, client, keys)
        app.state.anthropic_proxy = AnthropicProxy(settings, engine, app.state.metrics, client, keys)
        preparing = asyncio.create_task(_prepare_models(app, settings, engine))
        # With several workers a scrape reads every worker's files: keep this one's engine figures fresh in them.
        syncing = (
            asyncio.create_task(_sync_metrics(app.state.metrics, app.state.peer_load))
            if app.state.metrics.multiprocess
            else None
        )
        try:
            yield
        finally:
            if syncing is not None:
                syncing.cancel()
            app.state.ready = False
            app.state.not_ready_reason = "shutting down"
            await asyncio.gather(preparing, return_exceptions=True)
            await engine.shutdown(drain=True)
            await client.aclose()
            logger.info("stopped", extra={"requests": engine.stats().requests_total})

    app = FastAPI(
        title="ctxcompress",
        version=ctxcompress.__version__,
        summary="Prompt/context compression for RAG: REST API and OpenAI-compatible compressing proxy.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load Swagger UI / ReDoc from a CDN; ours are served from the package
        redoc_url=None,
    )
    install_docs(app)
    install_playground(app)
    install_request_constraints(app, default_method=settings.default_method, max_documents=settings.max_documents)
    app.state.settings = settings
    app.state.engine = None
    app.state.ready = False
    app.state.not_ready_reason = "starting"
    app.state.metrics = Metrics(lambda: app.state.engine)
    install_error_handlers(app)
    for module in (compress, recover, chat, messages):
        app.include_router(module.router)
    app.include_router(info.router)
    app.include_router(info.ops_router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_request_bytes, read_timeout_s=settings.body_read_timeout_s
    )
    app.state.keyring = KeyRing(settings.api_keys, settings.api_keys_file, settings.max_concurrent_requests)
    # Outside the body limit: keys first.
    app.add_middleware(ApiKeyMiddleware, keyring=app.state.keyring, metrics=app.state.metrics)
    app.add_middleware(ObservabilityMiddleware, metrics=app.state.metrics)
    app.state.peer_load = PeerLoad()  # stays unknown (never crowded) in a single process
    if settings.balance_connections:
        app.add_middleware(ConnectionBalancer, peers=app.state.peer_load, in_flight=lambda: _in_flight(app))
    return app


def _in_flight(app: FastAPI) -> int:
    engine = app.state.engine
    return engine.stats().in_flight if engine is not None else 0
