"""Schemathesis against the served OpenAPI spec (CI size: 40 examples per operation and mode, fixed seed).

The full run is ``scripts/fuzz_api.py`` (200 per operation and mode, > 1,000 cases). The service runs with an API
key (every case carries it) and a fake upstream, so the chat proxy forwards too; tiny random model.
"""

from __future__ import annotations

import pytest
from ctxcompress_service import Settings, build_app, build_engine
from ctxcompress_service.testing import ServiceThread

from ctxcompress import Compressor
from ctxcompress.pool import ModelPool
from tests.reliability.fuzz import run_fuzz
from tests.reliability.upstream import fake_openai

API_KEY = "fuzz-key"


@pytest.fixture(scope="module")
def served(tiny_scorer):  # noqa: ANN001, ANN201
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = ModelPool(device="cpu")
    pool.register("scorer", "smollm2-135m", tiny_scorer)
    with ServiceThread(fake_openai()) as upstream:
        settings = Settings(
            _env_file=None,
            device=["cpu"],
            preload_models=[],
            warmup=False,
            default_method="llmlingua",
            api_keys=[API_KEY],
            upstream_url=f"{upstream.url}/v1",
        )
        app = build_app(settings, engine_factory=lambda s: build_engine(s, [Compressor(pool=pool)]))
        with ServiceThread(app) as service:
            yield service.url
    torch.set_num_threads(before)


def test_generated_requests_get_no_5xx_and_conform_to_the_spec(served: str) -> None:
    report = run_fuzz(served, max_examples=40, api_key=API_KEY, seed=1)
    failures = {f"{o.operation} {o.mode}": (o.failed_checks, o.examples) for o in report.operations if o.failures}
    assert report.failures == 0 and report.server_errors == 0, failures
    assert report.cases >= 200
    by_operation = {(o.operation, o.mode): o for o in report.operations}
    assert by_operation[("POST /v1/compress", "positive")].statuses.get("200", 0) > 0  # some reach the model
    assert by_operation[("POST /v1/chat/completions", "positive")].statuses.get("200", 0) > 0
