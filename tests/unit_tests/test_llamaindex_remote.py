"""llama_index.postprocessor.ctxcompress remote mode against the real REST service (tiny scorer, loopback)."""

from __future__ import annotations

import time

import httpx
import pytest
from llama_index.postprocessor.ctxcompress import CtxCompressNodePostprocessor

from ctxcompress import Compressor, CtxCompressError, InvalidInput
from ctxcompress.pool import ModelPool
from tests.conftest import nq_rows
from tests.unit_tests.test_llamaindex_integration import nodes_of

API_KEY = "test-key-11"


@pytest.fixture(scope="module")
def local(tiny_scorer) -> Compressor:
    pool = ModelPool(device="cpu")
    pool.register("scorer", "smollm2-135m", tiny_scorer)
    return Compressor(pool=pool)


@pytest.fixture(scope="module")
def service_url(local):
    """The service app (same tiny model as ``local``) on a free loopback port, API keys required."""
    from ctxcompress_service.app import build_app, build_engine
    from ctxcompress_service.settings import Settings
    from ctxcompress_service.testing import ServiceThread

    settings = Settings(_env_file=None, device=["cpu"], warmup=False, api_keys=[API_KEY])
    app = build_app(settings, engine_factory=lambda s: build_engine(s, [local]))
    with ServiceThread(app) as thread:
        deadline = time.monotonic() + 60
        while httpx.get(f"{thread.url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "service not ready"
            time.sleep(0.1)
        yield thread.url


def as_tuples(nodes) -> list[tuple]:
    return [(n.node.node_id, n.node.get_content(), n.node.metadata, n.score) for n in nodes]


@pytest.mark.asyncio
async def test_remote_sync_and_async_equal_in_process(service_url, local):
    row = nq_rows(1)[0]
    nodes = nodes_of(row)
    settings = {
        "method": "longllmlingua",
        "max_tokens": 300,
        "instruction": "Answer briefly.",
        "options": {"window": 64},
    }
    remote = CtxCompressNodePostprocessor(base_url=service_url, api_key=API_KEY, **settings)
    expected = as_tuples(
        CtxCompressNodePostprocessor(compressor=local, **settings).postprocess_nodes(nodes, query_str=row["question"])
    )
    try:
        assert expected and as_tuples(remote.postprocess_nodes(nodes, query_str=row["question"])) == expected
        assert as_tuples(await remote.apostprocess_nodes(nodes, query_str=row["question"])) == expected
    finally:
        remote.close()


def test_remote_errors_arrive_as_library_errors(service_url, monkeypatch):
    monkeypatch.delenv("CTXCOMPRESS_API_KEY", raising=False)
    nodes = nodes_of(nq_rows(1)[0], 2)
    with pytest.raises(CtxCompressError, match="API key"):
        CtxCompressNodePostprocessor(base_url=service_url).postprocess_nodes(nodes, query_str="q")
    monkeypatch.setenv("CTXCOMPRESS_API_KEY", API_KEY)
    with pytest.raises(InvalidInput, match="needs a question"):
        CtxCompressNodePostprocessor(base_url=service_url).postprocess_nodes(nodes)
