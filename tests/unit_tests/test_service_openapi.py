"""The committed OpenAPI spec (service/openapi.json) matches the app; regenerate with
``.venv/bin/python -m ctxcompress_service.openapi service/openapi.json``."""

from __future__ import annotations

import json
from pathlib import Path

from ctxcompress_service.openapi import openapi_spec

SPEC = Path(__file__).resolve().parents[2] / "service" / "openapi.json"


def test_committed_openapi_spec_is_current() -> None:
    spec = openapi_spec()
    assert json.loads(SPEC.read_text(encoding="utf-8")) == spec, "regenerate service/openapi.json"
    paths = {"/v1/compress", "/v1/compress/batch", "/v1/chat/completions", "/v1/methods", "/metrics"}
    assert paths <= set(spec["paths"])
    compress = spec["paths"]["/v1/compress"]["post"]
    assert compress["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/CompressionRequest")
    assert {"413", "422", "429", "504"} <= set(compress["responses"])
