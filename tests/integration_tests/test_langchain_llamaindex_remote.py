"""Both integrations in remote mode against a real ``ctxcompress serve`` subprocess (SmolLM2 on CPU).

Same stores, questions and checks as the in-process tests (test_langchain_real.py, test_llamaindex_real.py);
concurrent calls reach the service together, so its engine batches them.
"""

from __future__ import annotations

import asyncio
import json
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

from tests.conftest import nq_documents, nq_rows
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


THIN_CLIENT_SCRIPT = r"""
import sys
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode

import ctxcompress
from ctxcompress.client import CtxCompressClient
from langchain_ctxcompress import CtxCompressDocumentCompressor
from llama_index.postprocessor.ctxcompress import CtxCompressNodePostprocessor

url, question = sys.argv[1], sys.argv[2]
docs = sys.argv[3:]
with CtxCompressClient(url, timeout=900) as client:
    result = client.compress({"method": "cpc", "documents": docs, "question": question, "budget": {"rate": 0.5}})
print("client", result.compressed_tokens <= result.target_tokens, len(result.documents) > 0)
compressor = CtxCompressDocumentCompressor(base_url=url, method="cpc", rate=0.5, timeout=900)
kept = compressor.compress_documents([Document(page_content=d) for d in docs], question)
print("langchain", len(kept) > 0)
post = CtxCompressNodePostprocessor(base_url=url, method="cpc", rate=0.5, timeout=900)
nodes = post.postprocess_nodes([NodeWithScore(node=TextNode(text=d), score=1.0) for d in docs], query_str=question)
print("llamaindex", len(nodes) > 0)
try:
    ctxcompress.Compressor
except ImportError as exc:
    print("in-process:", exc)
print("torch loaded:", "torch" in sys.modules or "transformers" in sys.modules)
"""


def test_the_base_install_without_torch_talks_to_the_service(service_url, rows, tmp_path):
    """The thin front: ``pip install ctxcompress`` (no ``[ml]`` extra) in a fresh venv has no torch, and its REST
    client and both adapters in remote mode compress through the running service; in-process use says what to
    install."""
    venv = tmp_path / "thin"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    lock = str(ROOT / "requirements" / "lock.txt")
    install = [python, "-m", "pip", "install", "-q", "-c", lock, str(ROOT), "langchain-core", "llama-index-core"]
    subprocess.run(install, check=True, timeout=1200, capture_output=True)
    assert subprocess.run([python, "-c", "import torch"], capture_output=True).returncode != 0
    docs = [d for row in rows[:1] for d in nq_documents(row)[:5]]
    args = [python, "-c", THIN_CLIENT_SCRIPT, service_url, rows[0]["question"], *docs]
    out = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "client True True" in out.stdout and "langchain True" in out.stdout and "llamaindex True" in out.stdout
    assert "pip install 'ctxcompress[ml]'" in out.stdout
    assert "torch loaded: False" in out.stdout
    (tmp_path / "request.json").write_text(json.dumps({"documents": docs, "question": rows[0]["question"]}))
    cli = subprocess.run(
        [str(venv / "bin" / "ctxcompress"), "compress", "--input", str(tmp_path / "request.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 2 and "pip install 'ctxcompress[ml]'" in cli.stderr and "Traceback" not in cli.stderr
