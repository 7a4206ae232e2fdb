"""The REST service on a real loopback port (uvicorn in a thread), backed by the tiny random model.

Covers compress, batch, every error status, auth on/off, readiness, methods/models, metrics and a graceful
shutdown that keeps an accepted request. A gate (threading.Event) holds batches on the device where a test
needs a request in flight.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time

import httpx
import pytest
from ctxcompress_service import Settings, build_app, build_engine
from ctxcompress_service.cli import connection_options
from ctxcompress_service.testing import ServiceThread

from ctxcompress import CompressionResult, Compressor, Overloaded
from ctxcompress.client import AsyncCtxCompressClient, CtxCompressClient
from ctxcompress.errors import Forbidden, InvalidInput, Unauthorized
from ctxcompress.pool import ModelPool

DOCS = [
    "The Nile is a major north-flowing river in northeastern Africa and flows into the Mediterranean Sea.",
    "Paris is the capital and most populous city of France, on the river Seine.",
    "The Amazon in South America is the largest river by discharge volume of water in the world.",
]
QUESTION = "Which river flows into the Mediterranean?"


def body(**overrides: object) -> dict:
    return {"method": "llmlingua", "documents": DOCS, "question": QUESTION, "budget": {"rate": 0.5}} | overrides


class GatedCompressor(Compressor):
    """A real Compressor whose worker waits for ``gate`` before each batch."""

    def __init__(self, pool: ModelPool, max_input_tokens: int = 200_000) -> None:
        super().__init__(pool=pool, max_input_tokens=max_input_tokens)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batch_sizes: list[int] = []

    def compress_prepared(self, prepared, *, return_exceptions=False):  # noqa: ANN001, ANN201
        self.entered.set()
        assert self.gate.wait(30)
        self.batch_sizes.append(len(prepared))
        return super().compress_prepared(prepared, return_exceptions=return_exceptions)


@pytest.fixture()
def make_service(tiny_scorer):  # noqa: ANN001, ANN201
    """``make_service(**settings) -> (ServiceThread, GatedCompressor)``; servers stop at teardown."""
    started: list[ServiceThread] = []

    def make(*, max_input_tokens: int = 200_000, **overrides: object) -> tuple[ServiceThread, GatedCompressor]:
        pool = ModelPool(device="cpu")
        pool.register("scorer", "smollm2-135m", tiny_scorer)
        gated = GatedCompressor(pool, max_input_tokens)
        values = {"device": ["cpu"], "preload_models": [], "warmup": False} | overrides
        settings = Settings(_env_file=None, **values)
        app = build_app(settings, engine_factory=lambda s: build_engine(s, [gated]))
        service = ServiceThread(app, **connection_options(settings)).start()  # uvicorn as `serve` runs it
        started.append(service)
        return service, gated

    yield make
    for service in started:
        service.stop()


def wait_ready(url: str) -> None:
    for _ in range(200):
        if httpx.get(f"{url}/readyz").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError("service never became ready")


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_compress_applies_service_defaults_and_metrics_move(make_service) -> None:  # noqa: ANN001
    service, _ = make_service(default_method="llmlingua", default_budget={"max_tokens": 30})
    wait_ready(service.url)
    before = httpx.get(f"{service.url}/metrics").text
    response = httpx.post(f"{service.url}/v1/compress", json={"documents": DOCS, "question": QUESTION}, timeout=60)
    assert response.status_code == 200, response.text
    result = CompressionResult.model_validate(response.json())
    assert result.method == "llmlingua" and result.target_tokens == 30
    assert result.compressed_tokens <= 30 < result.origin_tokens
    assert response.headers["x-request-id"]
    after = httpx.get(f"{service.url}/metrics").text
    labels = {"route": "/v1/compress", "method": "POST", "status": "200"}

    def moved(name: str, **where: str) -> float:
        return metric(after, name, **where) - metric(before, name, **where)

    assert moved("ctxcompress_http_requests_total", **labels) == 1
    assert moved("ctxcompress_tokens_total", direction="origin") == result.origin_tokens
    assert metric(after, "ctxcompress_tokens_total", direction="compressed") > 0
    assert moved("ctxcompress_batch_size_count") == 1
    assert metric(after, "ctxcompress_http_request_seconds_count", route="/v1/compress") >= 1
    assert "ctxcompress_queue_depth 0.0" in after
    stats = httpx.get(f"{service.url}/v1/stats").json()  # no service keys: every request is 'anonymous'
    assert stats["keys"]["anonymous"]["llmlingua"]["origin_tokens"] == result.origin_tokens


def test_batch_returns_results_and_per_item_errors(make_service) -> None:  # noqa: ANN001
    service, _ = make_service(max_batch_items=3)
    items = [body(budget={"rate": 1.0}), body(method="nope"), body(options={"windw": 3})]
    response = httpx.post(f"{service.url}/v1/compress/batch", json=items, timeout=60)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["result"]["ratio"] == 1.0 and results[0]["error"] is None
    assert results[1]["error"]["type"] == "InvalidInput" and results[1]["error"]["field"] == "method"
    assert results[2]["error"]["field"] == "options.windw" and "window" in results[2]["error"]["message"]
    too_many = httpx.post(f"{service.url}/v1/compress/batch", json=items * 2)
    assert too_many.status_code == 413 and too_many.json()["error"]["type"] == "PayloadTooLarge"


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"question": QUESTION}, 422, "documents"),
        (body(bogus=1), 422, "bogus"),
        (body(budget={"rate": 2}), 422, "budget.rate"),
        (body(budget={"rate": 0.5, "max_tokens": 9}), 422, "budget"),
        (body(method="nope"), 422, "method"),
        (body(options={"scorer": "/etc/passwd"}), 422, "options.scorer"),
        (body(documents=["a", "b", "c", "d", "e"]), 413, "documents"),
        (body(documents=["word " * 400]), 413, "documents"),
    ],
)
def test_client_mistakes_get_4xx_naming_the_field(make_service, payload: dict, status: int, field: str) -> None:  # noqa: ANN001
    service, _ = make_service(max_documents=4, max_input_tokens=300)
    response = httpx.post(f"{service.url}/v1/compress", json=payload, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["message"]
    assert error["type"] in {"InvalidInput", "PayloadTooLarge", "UnknownModel"}


def test_malformed_and_oversized_bodies(make_service) -> None:  # noqa: ANN001
    service, _ = make_service(max_request_bytes=2000)
    headers = {"content-type": "application/json"}
    broken = httpx.post(f"{service.url}/v1/compress", content=b'{"documents": [', headers=headers)
    assert broken.status_code == 422 and broken.json()["error"]["field"] == "body"
    big = json.dumps(body(documents=["x" * 3000])).encode()
    assert httpx.post(f"{service.url}/v1/compress", content=big, headers=headers).status_code == 413
    chunked = httpx.post(f"{service.url}/v1/compress", content=iter([big[:1500], big[1500:]]), headers=headers)
    assert chunked.status_code == 413 and chunked.json()["error"]["type"] == "PayloadTooLarge"
    missing = httpx.get(f"{service.url}/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFound"


def test_api_keys(make_service) -> None:  # noqa: ANN001
    service, _ = make_service(api_keys="k-one,k-two")
    url = f"{service.url}/v1/compress"
    payload = body(budget={"rate": 1.0})
    assert httpx.post(url, json=payload).status_code == 401
    assert httpx.post(url, json=payload, headers={"authorization": "Bearer nope"}).status_code == 403
    assert httpx.post(url, json=payload, headers={"authorization": "Bearer k-two"}).status_code == 200
    assert httpx.get(f"{service.url}/v1/methods").status_code == 401
    assert httpx.get(f"{service.url}/healthz").status_code == 200  # probes and metrics stay open
    assert httpx.get(f"{service.url}/metrics").status_code == 200
    with CtxCompressClient(service.url, api_key="k-one") as client:
        assert client.compress(payload).ratio == 1.0
    with CtxCompressClient(service.url, api_key="bad") as client, pytest.raises(Forbidden):
        client.compress(payload)
    with CtxCompressClient(service.url) as client, pytest.raises(Unauthorized):
        client.methods()


def test_overload_429_and_timeout_504(make_service) -> None:  # noqa: ANN001
    service, gated = make_service(max_concurrent_requests=1, request_timeout_s=1.0)
    gated.gate.clear()
    outcome: dict[str, httpx.Response] = {}
    held = threading.Thread(
        target=lambda: outcome.update(first=httpx.post(f"{service.url}/v1/compress", json=body(), timeout=30))
    )
    held.start()
    assert gated.entered.wait(10)
    rejected = httpx.post(f"{service.url}/v1/compress", json=body())
    assert rejected.status_code == 429 and int(rejected.headers["retry-after"]) >= 1
    assert rejected.json()["error"]["type"] == "Overloaded"
    with CtxCompressClient(service.url) as client, pytest.raises(Overloaded) as info:
        client.compress(body())
    assert info.value.retry_after_s >= 1
    held.join(30)
    assert outcome["first"].status_code == 504 and outcome["first"].json()["error"]["type"] == "CompressionTimeout"
    gated.gate.set()


def test_readiness_methods_and_models(make_service) -> None:  # noqa: ANN001
    broken, _ = make_service(preload_models="no-such-model")
    time.sleep(0.2)
    health = httpx.get(f"{broken.url}/healthz").json()  # alive, and the same engine facts as /readyz
    assert health["status"] == "ok" and health["devices"] == ["cpu"]
    not_ready = httpx.get(f"{broken.url}/readyz")
    assert not_ready.status_code == 503 and "no-such-model" in not_ready.json()["error"]["message"]
    service, _ = make_service()
    wait_ready(service.url)
    ready = httpx.get(f"{service.url}/readyz").json()
    assert ready["devices"] == ["cpu"] and "scorer:smollm2-135m" in ready["loaded"]
    assert httpx.get(f"{service.url}/healthz").json() == ready  # one truth (was devices [] / loaded [] before)
    methods = httpx.get(f"{service.url}/v1/methods").json()
    by_name = {m["name"]: m for m in methods["methods"]}
    assert {"llmlingua", "longllmlingua"} <= set(by_name)
    assert by_name["llmlingua"]["options"]["properties"]["window"]["default"] == 200
    assert by_name["longllmlingua"]["needs_question"] is True
    assert methods["default_method"] == "hybrid" and methods["default_budget"]["rate"] == 0.5
    models = {m["name"]: m for m in httpx.get(f"{service.url}/v1/models").json()["data"]}
    assert models["smollm2-135m"]["kind"] == "causal-lm" and models["smollm2-135m"]["loaded"] is True
    assert models["minilm-l6"]["loaded"] is False


def test_graceful_shutdown_finishes_an_accepted_request(make_service) -> None:  # noqa: ANN001
    service, gated = make_service()
    url = service.url
    gated.gate.clear()
    outcome: dict[str, httpx.Response] = {}
    inflight = threading.Thread(
        target=lambda: outcome.update(r=httpx.post(f"{url}/v1/compress", json=body(), timeout=60))
    )
    inflight.start()
    assert gated.entered.wait(10)
    stopper = threading.Thread(target=service.stop)  # what uvicorn does on SIGTERM
    stopper.start()
    time.sleep(0.3)
    with pytest.raises(httpx.TransportError):  # no longer accepting
        httpx.get(f"{url}/healthz", timeout=2)
    gated.gate.set()
    inflight.join(60)
    stopper.join(60)
    assert outcome["r"].status_code == 200 and outcome["r"].json()["compressed_tokens"] > 0
    assert not stopper.is_alive()


def test_clients_sync_and_async(make_service) -> None:  # noqa: ANN001
    import asyncio

    service, _ = make_service()
    with CtxCompressClient(service.url) as client:
        result = client.compress(body(budget={"max_tokens": 40}))
        assert isinstance(result, CompressionResult) and result.compressed_tokens <= 40
        results = client.compress_batch([body(budget={"rate": 1.0}), body(method="nope")], return_exceptions=True)
        assert isinstance(results[0], CompressionResult) and isinstance(results[1], InvalidInput)
        assert results[1].field == "method"
        with pytest.raises(InvalidInput) as info:
            client.compress_batch([body(method="nope")])
        assert info.value.field == "method"
        with pytest.raises(InvalidInput) as info:
            client.compress(body(options={"windw": 1}))
        assert info.value.field == "options.windw" and re.search("valid options", info.value.message)
        assert "llmlingua" in {m["name"] for m in client.methods()["methods"]}

    async def run() -> None:
        async with AsyncCtxCompressClient(service.url) as client:
            wait = await client.health()
            assert wait["devices"] == ["cpu"]
            results = await asyncio.gather(*(client.compress(body(budget={"rate": 1.0})) for _ in range(3)))
            assert all(r.ratio == 1.0 for r in results)
            batch = await client.compress_batch([body(budget={"rate": 1.0})])
            assert batch[0].ratio == 1.0

    asyncio.run(run())


def test_a_request_whose_client_left_is_dropped_unrun(make_service) -> None:  # noqa: ANN001
    service, gated = make_service()
    url = service.url
    gated.gate.clear()
    outcome: dict[str, httpx.Response] = {}
    held = threading.Thread(target=lambda: outcome.update(r=httpx.post(f"{url}/v1/compress", json=body(), timeout=60)))
    held.start()
    assert gated.entered.wait(10)
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
        httpx.post(f"{url}/v1/compress", json=body(question="Where is Paris?"), timeout=0.5)
    time.sleep(0.3)
    gated.gate.set()
    held.join(60)
    assert outcome["r"].status_code == 200
    page = httpx.get(f"{url}/metrics").text
    assert metric(page, "ctxcompress_http_requests_total", route="/v1/compress", status="499") == 1
    assert metric(page, "ctxcompress_engine_dropped_total") == 1
    assert gated.batch_sizes == [1]  # only the first request ever ran


def test_unauthenticated_callers_get_a_challenge_before_any_body_check(make_service) -> None:  # noqa: ANN001
    service, _ = make_service(api_keys=["k1"])
    bad_body = {"content": b"{", "headers": {"content-type": "application/json"}}
    missing = httpx.post(f"{service.url}/v1/compress", **bad_body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"]["type"] == "Unauthorized"
    wrong = httpx.post(f"{service.url}/v1/compress", content=b"{", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 403 and "www-authenticate" not in wrong.headers
    authed_headers = {"authorization": "Bearer k1", "content-type": "application/json"}
    authed = httpx.post(f"{service.url}/v1/compress", content=b"{", headers=authed_headers)
    assert authed.status_code == 422


def test_bodies_the_parser_refuses_say_which_limit(make_service) -> None:  # noqa: ANN001
    service, _ = make_service()
    url = f"{service.url}/v1/compress"
    json_type = {"content-type": "application/json"}
    digits = httpx.post(url, content=b'{"documents": [' + b"1" * 5000 + b"]}", headers=json_type)
    assert digits.status_code == 422 and "4,300 digits" in digits.json()["error"]["message"]
    nested = httpx.post(url, content=b"[" * 1000 + b"]" * 1000, headers=json_type)
    assert nested.status_code == 422 and "nests" in nested.json()["error"]["message"]
    plain = httpx.post(url, content=b"some documents", headers={"content-type": "text/plain"})
    assert plain.status_code == 415 and "application/json" in plain.json()["error"]["message"]
    huge = httpx.post(url, json={"documents": ["a b c"], "budget": {"max_tokens": 10**40}})
    assert huge.status_code == 422 and huge.json()["error"]["field"] == "budget.max_tokens"
    tight = {"documents": ["The Nile flows north into the Mediterranean Sea."], "question": "Which river flows north?"}
    refused = httpx.post(url, json=tight | {"budget": {"max_tokens": 2}})
    assert refused.status_code == 422
    assert "question" in refused.json()["error"]["message"] and "instruction" not in refused.json()["error"]["message"]


def test_a_body_shorter_than_its_content_length_gets_408(make_service) -> None:  # noqa: ANN001
    import socket

    service, _ = make_service(body_read_timeout_s=0.5)
    host, port = service.url.removeprefix("http://").split(":")
    started = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            f"POST /v1/compress HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"documents"')
        answer = b""
        while b"stalled" not in answer:  # status line and body may come in separate segments
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"stalled" in answer
    assert time.perf_counter() - started < 8  # 0.5 s limit (was: held until the client gave up)


def test_docs_page_works_offline_and_is_counted(make_service) -> None:  # noqa: ANN001
    service, _ = make_service()
    page = httpx.get(f"{service.url}/docs")
    assert page.status_code == 200 and "cdn." not in page.text and "/docs/assets/swagger-ui-bundle.js" in page.text
    script = httpx.get(f"{service.url}/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert httpx.get(f"{service.url}/docs/assets/swagger-ui.css").status_code == 200
    scraped = httpx.get(f"{service.url}/metrics").text
    assert metric(scraped, "ctxcompress_http_requests_total", route="/docs", status="200") >= 1


def test_a_request_may_run_longer_than_the_body_read_timeout(make_service) -> None:  # noqa: ANN001
    """The 408 limit covers reading the body only, not the wait for the result (the disconnect watcher's receive)."""
    service, gated = make_service(body_read_timeout_s=0.3)
    gated.gate.clear()
    outcome: dict[str, httpx.Response] = {}
    held = threading.Thread(
        target=lambda: outcome.update(r=httpx.post(f"{service.url}/v1/compress", json=body(), timeout=30))
    )
    held.start()
    assert gated.entered.wait(10)
    time.sleep(1.0)  # > 3x the body read timeout
    gated.gate.set()
    held.join(30)
    assert outcome["r"].status_code == 200, outcome["r"].text


def test_recover_over_rest_and_spans_in_the_result(make_service) -> None:  # noqa: ANN001
    service, _ = make_service()
    original = "The population of Washington was 1,234,567 in 2020, according to the census."
    compressed = "population Wash 1 2020 census."
    recovered = httpx.post(
        f"{service.url}/v1/recover",
        json={"original": original, "compressed": compressed, "response": "It was Wash in 2020."},
    )
    assert recovered.status_code == 200 and "Washington" in recovered.json()["response"]
    too_long = httpx.post(
        f"{service.url}/v1/recover", json={"original": "a", "compressed": "a", "response": "a" * 20_000}
    )
    assert too_long.status_code == 422 and too_long.json()["error"]["field"] == "response"

    docs = body()["documents"]
    result = httpx.post(f"{service.url}/v1/compress", json=body(include_spans=True)).json()
    assert [s["index"] for s in result["spans"]] == list(range(len(docs)))
    for spans in result["spans"]:
        document = docs[spans["index"]]
        kept_text = " ".join(document[a:b] for a, b in spans["kept"])
        kept = [d["text"] for d in result["documents"] if d["index"] == spans["index"]]
        assert kept_text.split() == " ".join(kept).split()  # the spans hold exactly the kept words
        covered = sorted(spans["kept"] + spans["dropped"])
        assert covered[0][0] == 0 and covered[-1][1] == len(document)
    assert httpx.post(f"{service.url}/v1/compress", json=body()).json()["spans"] is None  # opt-in


def test_a_flooding_key_gets_429_and_another_key_is_unaffected(make_service, tmp_path) -> None:  # noqa: ANN001
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps(
            [
                {"name": "flood", "key": "k-flood", "requests_per_minute": 3},
                {"name": "calm", "key": "k-calm"},
                {"name": "narrow", "key": "k-narrow", "queue_share": 0.25},
            ]
        )
    )
    service, gated = make_service(api_keys_file=str(keys), max_concurrent_requests=4)
    url = f"{service.url}/v1/compress"

    def post(key: str) -> httpx.Response:
        return httpx.post(url, json=body(), headers={"authorization": f"Bearer {key}"}, timeout=30)

    flood = [post("k-flood").status_code for _ in range(6)]
    assert flood[:3] == [200, 200, 200] and set(flood[3:]) == {429}
    refused = post("k-flood")
    assert (
        int(refused.headers["retry-after"]) >= 1 and "'flood' is over its quota" in refused.json()["error"]["message"]
    )
    assert [post("k-calm").status_code for _ in range(4)] == [200] * 4  # the other key keeps being served

    gated.gate.clear()  # the narrow key may hold 1 of the 4 queue places: a second request at once is refused
    gated.entered.clear()  # set by earlier batches: wait for the held request's own batch below
    held = threading.Thread(target=post, args=("k-narrow",))
    held.start()
    assert gated.entered.wait(10)
    assert post("k-narrow").status_code == 429
    gated.gate.set()
    held.join(30)
    assert post("k-narrow").status_code == 200

    scraped = httpx.get(f"{service.url}/metrics").text
    assert metric(scraped, "ctxcompress_key_requests_total", key="flood") == 3
    assert metric(scraped, "ctxcompress_key_rejected_total", key="flood") == 4
    assert metric(scraped, "ctxcompress_key_tokens_total", key="calm", method="llmlingua", direction="origin") > 0


def test_stats_report_savings_per_key_and_method_and_keys_see_their_own(make_service, tmp_path) -> None:  # noqa: ANN001
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps(
            [
                {"name": "team-a", "key": "k-a"},
                {"name": "team-b", "key": "k-b"},
                {"name": "ops", "key": "k-ops", "sees_all_stats": True},
            ]
        )
    )
    service, _ = make_service(api_keys_file=str(keys))

    def call(path: str, key: str, payload: object = None) -> dict:
        headers = {"authorization": f"Bearer {key}"}
        if payload is None:
            return httpx.get(f"{service.url}{path}", headers=headers).json()
        response = httpx.post(f"{service.url}{path}", json=payload, headers=headers, timeout=30)
        assert response.status_code == 200
        return response.json()

    single = call("/v1/compress", "k-a", body())
    batch = call("/v1/compress/batch", "k-a", [body(), body(method="cpc")])["results"]
    other = call("/v1/compress", "k-b", body(method="cpc"))
    lingua = [single, batch[0]["result"]]
    own = call("/v1/stats", "k-a")
    assert set(own["keys"]) == {"team-a"}  # a key sees its own savings only
    row = own["keys"]["team-a"]["llmlingua"]
    assert row["compressions"] == 2
    assert row["origin_tokens"] == sum(r["origin_tokens"] for r in lingua)
    assert row["saved_tokens"] == sum(r["origin_tokens"] - r["compressed_tokens"] for r in lingua) > 0
    assert row["saved_fraction"] == round(row["saved_tokens"] / row["origin_tokens"], 4)
    assert own["keys"]["team-a"]["cpc"]["compressions"] == 1
    assert own["total"]["compressions"] == 3
    everyone = call("/v1/stats", "k-ops")
    assert set(everyone["keys"]) == {"team-a", "team-b"}
    assert everyone["keys"]["team-b"]["cpc"]["origin_tokens"] == other["origin_tokens"]
    assert everyone["total"]["compressions"] == 4 and everyone["started_at"] <= time.time()
    assert httpx.get(f"{service.url}/v1/stats").status_code == 401


def test_keys_rotate_from_the_file_without_a_restart(make_service, tmp_path) -> None:  # noqa: ANN001
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"name": "old", "key": "k-old"}]))
    service, _ = make_service(api_keys_file=str(keys))
    methods = f"{service.url}/v1/methods"
    assert httpx.get(methods, headers={"x-api-key": "k-old"}).status_code == 200
    keys.write_text(json.dumps([{"name": "new", "key": "k-new"}]))
    os.utime(keys, (time.time() + 5, time.time() + 5))  # a visible change even within the file system's clock tick
    time.sleep(1.1)  # the file is checked at most once a second
    assert httpx.get(methods, headers={"x-api-key": "k-old"}).status_code == 403
    assert httpx.get(methods, headers={"authorization": "Bearer k-new"}).status_code == 200
    keys.write_text("not json")  # a broken rewrite keeps the working keys
    os.utime(keys, (time.time() + 10, time.time() + 10))
    time.sleep(1.1)
    assert httpx.get(methods, headers={"authorization": "Bearer k-new"}).status_code == 200


def test_headers_that_never_finish_get_408_and_the_connection_closes(make_service, monkeypatch) -> None:  # noqa: ANN001
    import socket

    monkeypatch.setenv("CTXCOMPRESS_HEADER_READ_TIMEOUT_S", "0.5")
    service, _ = make_service()
    host, port = service.url.removeprefix("http://").split(":")
    started = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/compress HTTP/1.1\r\nHost: x\r\nContent-Type: appl")  # ... and nothing more
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and time.perf_counter() - started < 8
    with httpx.Client(base_url=service.url) as client:  # complete requests, kept-alive connections: unaffected
        assert client.get("/healthz").status_code == 200
        time.sleep(1.0)  # idle on the kept-alive connection, longer than the header limit
        assert client.get("/healthz").status_code == 200


def _idle_connection_closed_after(url: str, idle_s: float) -> bool:
    """Whether the server closed a kept-alive connection left idle for ``idle_s`` after one request."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        time.sleep(idle_s)
        sock.settimeout(0.2)
        try:
            return sock.recv(1) == b""  # EOF: the server closed it
        except TimeoutError:
            return False  # still open, nothing to read


def test_keep_alive_outlasts_client_pools_and_is_a_setting(make_service) -> None:  # noqa: ANN001
    # uvicorn's own 5 s equals httpx's pool expiry: a reused connection could meet the server's close (a reset)
    assert Settings(_env_file=None).keep_alive_s > 60
    short, _ = make_service(keep_alive_s=0.3)
    assert _idle_connection_closed_after(short.url, 1.0)
    default, _ = make_service()
    assert not _idle_connection_closed_after(default.url, 1.0)
