"""langchain_ctxcompress remote mode against the real REST service (tiny random scorer, loopback port)."""

from __future__ import annotations

import time

import httpx
import pytest
from langchain_core.documents import Document
from langchain_ctxcompress import (
    CtxCompressDocumentCompressor,
    CtxCompressDocumentTransformer,
    CtxCompressRetriever,
)

from ctxcompress import Compressor, CtxCompressError, InvalidInput
from ctxcompress.pool import ModelPool
from tests.conftest import nq_rows
from tests.unit_tests.test_langchain_integration import ListRetriever, documents_of

API_KEY = "test-key-7"


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


@pytest.fixture(scope="module")
def row() -> dict:
    return nq_rows(1)[0]


def as_tuples(documents) -> list[tuple]:
    return [(d.id, d.page_content, d.metadata) for d in documents]


def test_remote_compressor_equals_in_process(service_url, local, row):
    docs = documents_of(row)
    settings = {
        "method": "longllmlingua",
        "max_tokens": 300,
        "instruction": "Answer briefly.",
        "options": {"window": 64},
    }
    remote = CtxCompressDocumentCompressor(base_url=service_url, api_key=API_KEY, **settings)
    in_process = CtxCompressDocumentCompressor(compressor=local, **settings)
    try:
        got = remote.compress_documents(docs, row["question"])
    finally:
        remote.close()
    assert got and as_tuples(got) == as_tuples(in_process.compress_documents(docs, row["question"]))


@pytest.mark.asyncio
async def test_remote_async_retriever_and_transformer_equal_in_process(service_url, local, row, monkeypatch):
    monkeypatch.setenv("CTXCOMPRESS_API_KEY", API_KEY)  # picked up when api_key= is not given
    docs = documents_of(row)
    base = ListRetriever(documents=docs)
    remote = CtxCompressRetriever(base_retriever=base, base_url=service_url, rate=0.4)
    in_process = CtxCompressRetriever(base_retriever=base, compressor=local, rate=0.4)
    got = await remote.ainvoke(row["question"])
    assert got and as_tuples(got) == as_tuples(in_process.invoke(row["question"]))

    transformer = CtxCompressDocumentTransformer(base_url=service_url, max_tokens=250)
    got = await transformer.atransform_documents(docs)
    expected = CtxCompressDocumentTransformer(compressor=local, max_tokens=250).transform_documents(docs)
    assert got and as_tuples(got) == as_tuples(expected)


def test_remote_errors_arrive_as_library_errors(service_url, row, monkeypatch):
    monkeypatch.delenv("CTXCOMPRESS_API_KEY", raising=False)
    docs = [Document(page_content=t) for t in ("alpha beta", "gamma delta")]
    with pytest.raises(CtxCompressError, match="API key"):
        CtxCompressDocumentCompressor(base_url=service_url).compress_documents(docs, "q")
    bad = CtxCompressDocumentCompressor(base_url=service_url, api_key=API_KEY, options={"no_such_option": 1})
    with pytest.raises(InvalidInput, match="no_such_option"):
        bad.compress_documents(docs, "q")
