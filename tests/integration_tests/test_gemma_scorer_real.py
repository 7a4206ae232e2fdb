"""The embedded Gemma 3 270M base as scorer (``options.scorer = "gemma-3-270m"``; sliding-window layers, run by
the transformers decoder), CPU fp32, on a real NQ request; and the service's answer when it is not prepared.

Needs ``ctxcompress models prepare gemma-3-270m`` (done by ``scripts/bootstrap.sh``).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from ctxcompress_service import Settings, build_app
from ctxcompress_service.testing import ServiceThread

from ctxcompress import CompressionResult
from ctxcompress.engines.decoder import TransformersDecoder
from tests.conftest import gold_index, nq_documents, nq_rows

pytestmark = pytest.mark.real_model
GEMMA = "gemma-3-270m"
DOCS = 6
HEADER = re.compile(r"Document \[(\d+)\]")


@pytest.fixture(scope="module")
def row() -> dict:
    return nq_rows(2, gold=4)[1]  # the gold document is the 5th: within the first six


def gemma_request(row: dict, method: str) -> dict:
    return {
        "method": method,
        "documents": [d[:450] for d in nq_documents(row)[:DOCS]],  # short: Gemma's 262k-vocab head is slow on CPU
        "question": row["question"],
        "budget": {"rate": 0.4},
        "options": {"scorer": GEMMA},
    }


def check_result(result: CompressionResult) -> None:
    assert 0.95 * result.target_tokens <= result.compressed_tokens <= result.target_tokens < result.origin_tokens
    assert result.ranking is not None and sorted(result.ranking) == list(range(DOCS))
    indices = [d.index for d in result.documents]
    assert indices and len(set(indices)) == len(indices) and set(indices) <= set(range(DOCS))
    for document in result.documents:  # a kept document shows no header but its own
        assert set(HEADER.findall(document.text)) <= {str(document.index + 1)}, document.text[:120]
    kept_headers = [int(n) - 1 for n in HEADER.findall(result.prompt)]
    assert kept_headers == [i for i in indices if i in kept_headers]  # headers in the prompt follow the kept order


@pytest.mark.parametrize("method", ["longllmlingua", "llmlingua"])
def test_gemma_scorer_compresses_a_real_nq_request(real_compressor, row: dict, method: str) -> None:  # noqa: ANN001
    result = real_compressor.compress(gemma_request(row, method))
    assert isinstance(real_compressor.pool.scorer(GEMMA).decoder, TransformersDecoder)
    check_result(result)
    if method == "longllmlingua":
        assert gold_index(row) in result.ranking[:3], result.ranking
        assert [d.index for d in result.documents] == result.ranking[: len(result.documents)]  # best-first
    else:
        assert [d.index for d in result.documents] == sorted(d.index for d in result.documents)  # input order


def test_service_answers_503_for_an_unprepared_gemma_without_converting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, row: dict
) -> None:
    """The service's own engine (``build_engine``: a registry that never converts inside a request) over an
    empty model home: a request naming Gemma is refused at once, with the command the operator should run."""
    monkeypatch.setenv("CTXCOMPRESS_HOME", str(tmp_path))
    settings = Settings(_env_file=None, device=["cpu"], preload_models=[], warmup=False)
    with ServiceThread(build_app(settings)) as service:
        for _ in range(500):
            if httpx.get(f"{service.url}/readyz").status_code == 200:
                break
            time.sleep(0.05)
        else:
            pytest.fail("service never became ready")
        started = time.monotonic()
        response = httpx.post(f"{service.url}/v1/compress", json=gemma_request(row, "longllmlingua"), timeout=60)
        elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["type"] == "ModelNotPrepared" and error["field"] == "options.scorer"
    assert f"ctxcompress models prepare {GEMMA}" in error["message"]
    assert elapsed < 2.0, elapsed
    assert not list(tmp_path.rglob("*gemma*"))  # no conversion started
