"""Batch isolation through the REST service (tiny random model): two concurrent HTTP callers whose
``longllmlingua`` requests differ in options share one engine batch, and each gets exactly the result it gets
when sent alone (prompt, ranking, kept document indices).

The batching service waits up to 10 s for a second request (``max_wait_ms``) and closes a batch at two
(``max_batch_requests``), so the two callers always share a batch; the engine's batch-size counters prove it.
The reference service runs every request alone (``max_batch_requests=1``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from ctxcompress_service import Settings, build_app, build_engine
from ctxcompress_service.testing import ServiceThread

from ctxcompress import Compressor
from ctxcompress.methods.longllmlingua import RESTRICTIVE_STATEMENT
from ctxcompress.pool import ModelPool
from tests.conftest import nq_documents, nq_rows


@pytest.fixture()
def make_service(tiny_scorer):  # noqa: ANN001, ANN201
    """``make_service(**settings) -> (url, engine)`` on the tiny scorer; servers stop at teardown."""
    started: list[ServiceThread] = []

    def make(**overrides: object) -> tuple[str, Any]:
        pool = ModelPool(device="cpu")
        pool.register("scorer", "smollm2-135m", tiny_scorer)
        compressor = Compressor(pool=pool)
        values = {"device": ["cpu"], "preload_models": [], "warmup": False} | overrides
        app = build_app(Settings(_env_file=None, **values), engine_factory=lambda s: build_engine(s, [compressor]))
        service = ServiceThread(app).start()
        started.append(service)
        for _ in range(500):
            if httpx.get(f"{service.url}/readyz").status_code == 200:
                return service.url, app.state.engine
            time.sleep(0.02)
        raise AssertionError("service never became ready")

    yield make
    for service in started:
        service.stop()


def request(row: dict, options: dict[str, Any]) -> dict:
    return {
        "method": "longllmlingua",
        "documents": [d[:300] for d in nq_documents(row)[:6]],
        "question": row["question"],
        "budget": {"rate": 0.3},
        "options": options,
    }


# Every option that a batched pass once read from the group's first request differs between the two callers.
NARROW = {"window": 48, "restrictive_statement": "", "rank_doc_tokens": 16, "reorder": "original"}
DEFAULTS = {"window": 200, "restrictive_statement": RESTRICTIVE_STATEMENT, "rank_doc_tokens": 1024, "reorder": "sort"}


def essentials(result: dict) -> tuple[str, list[int] | None, list[int]]:
    return result["prompt"], result["ranking"], [d["index"] for d in result["documents"]]


def test_concurrent_callers_with_different_options_get_their_alone_results(make_service) -> None:  # noqa: ANN001
    rows = nq_rows(2)
    requests = {"narrow": request(rows[0], NARROW), "defaults": request(rows[1], DEFAULTS)}

    alone_url, alone_engine = make_service(max_batch_requests=1)

    def compress_alone(payload: dict) -> dict:
        response = httpx.post(f"{alone_url}/v1/compress", json=payload, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    alone = {name: compress_alone(payload) for name, payload in requests.items()}
    # The options matter (else equal results could not tell isolation from leakage): each caller's request
    # with the other caller's options compresses differently.
    swapped = {"narrow": request(rows[0], DEFAULTS), "defaults": request(rows[1], NARROW)}
    for name, payload in swapped.items():
        assert essentials(compress_alone(payload)) != essentials(alone[name]), name
    assert alone_engine.stats().batch_sizes == Counter({1: 4})

    batch_url, batch_engine = make_service(max_batch_requests=2, max_wait_ms=10_000)
    for order in (["narrow", "defaults"], ["defaults", "narrow"]):  # each caller once the batch's first member
        together: dict[str, httpx.Response] = {}

        def call(name: str, into: dict[str, httpx.Response]) -> None:
            into[name] = httpx.post(f"{batch_url}/v1/compress", json=requests[name], timeout=60)

        callers = []
        for name in order:
            callers.append(threading.Thread(target=call, args=(name, together)))
            callers[-1].start()
            time.sleep(0.2)  # the first caller is then the batch's first member
        for caller in callers:
            caller.join(60)
        for name in order:
            assert together[name].status_code == 200, together[name].text
            assert essentials(together[name].json()) == essentials(alone[name]), (order, name)
            assert together[name].json()["compressed_tokens"] == alone[name]["compressed_tokens"]
    assert batch_engine.stats().batch_sizes == Counter({2: 2}), "the callers did not share one batch per round"
