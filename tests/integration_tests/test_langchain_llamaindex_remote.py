"""Both integrations in remote mode against a real ``ctxcompress serve`` subprocess (SmolLM2 on CPU).

Same stores, questions and checks as the in-process tests (test_langchain_real.py, test_llamaindex_real.py);
concurrent calls reach the service together, so its engine batches them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from langchain_ctxcompress import CtxCompressDocumentCompressor, CtxCompressRetriever
from llama_index.postprocessor.ctxcompress import CtxCompressNodePostprocessor

from tests.conftest import nq_rows
from tests.integration_tests import test_langchain_real as lc
from tests.integration_tests import test_llamaindex_real as li

pytestmark = pytest.mark.real_model
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 900  # a shared 2-core CPU can take minutes per batch; the default 60 s would time out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def service_url(tmp_path_factory):
    """``python -m ctxcompress.cli serve`` on a free loopback port (CPU); waits for /readyz, stops with SIGTERM."""
    port = free_port()
    log = (tmp_path_factory.mktemp("service") / "serve.log").open("w")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "CTXCOMPRESS_DEVICE": "cpu",
        "CTXCOMPRESS_REQUEST_TIMEOUT_S": str(TIMEOUT_S),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctxcompress.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, f"service exited: {Path(log.name).read_text()[-2000:]}"
            assert time.monotonic() < deadline, "service not ready in 600 s"
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return nq_rows(3)


def test_langchain_remote_sync_batch_and_async(service_url, rows):
    from langchain_classic.retrievers import ContextualCompressionRetriever

    store = lc.build_store(rows)
    base = store.as_retriever(search_kwargs={"k": lc.TOP_K})
    retriever = CtxCompressRetriever(base_retriever=base, base_url=service_url, rate=lc.RATE, timeout=TIMEOUT_S)
    try:
        outputs = retriever.batch([row["question"] for row in rows[:2]])  # concurrent threads, one sync client
    finally:
        retriever.close()
    kept = 0
    for row, out in zip(rows, outputs, strict=False):
        retrieved = base.invoke(row["question"])
        lc.check_output(store, retrieved, out, row["question"], lc.rate_target(retrieved, row["question"]))
        kept += lc.answer_kept(row, out)

    compressor = CtxCompressDocumentCompressor(base_url=service_url, max_tokens=lc.MAX_TOKENS, timeout=TIMEOUT_S)
    contextual = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)
    out = asyncio.run(contextual.ainvoke(rows[2]["question"]))
    lc.check_output(store, base.invoke(rows[2]["question"]), out, rows[2]["question"], lc.MAX_TOKENS)
    kept += lc.answer_kept(rows[2], out)
    assert kept >= 2, kept


def test_llamaindex_remote_async_gather_and_sync(service_url, rows):
    index = li.build_index(rows)
    retriever = index.as_retriever(similarity_top_k=li.TOP_K)
    post = CtxCompressNodePostprocessor(base_url=service_url, max_tokens=li.MAX_TOKENS, timeout=TIMEOUT_S)
    retrieved = [retriever.retrieve(row["question"]) for row in rows]

    async def both() -> list:
        return await asyncio.gather(
            *(post.apostprocess_nodes(retrieved[q], query_str=rows[q]["question"]) for q in (1, 2))
        )

    kept = 0
    for q, out in zip((1, 2), asyncio.run(both()), strict=True):
        li.check_output(index, retrieved[q], out, rows[q]["question"], li.MAX_TOKENS)
        kept += li.answer_kept(rows[q], out)

    sync_post = CtxCompressNodePostprocessor(base_url=service_url, rate=li.RATE, timeout=TIMEOUT_S)
    try:
        out = sync_post.postprocess_nodes(retrieved[0], query_str=rows[0]["question"])
    finally:
        sync_post.close()
    li.check_output(index, retrieved[0], out, rows[0]["question"], li.rate_target(retrieved[0], rows[0]["question"]))
    kept += li.answer_kept(rows[0], out)
    assert kept >= 2, kept  # the gold passage's answer survives for most of the three questions
