"""Bad input, library and HTTP: every input gets a correct result or a clear 4xx naming the field; never a 5xx,
an escaped exception or a hang.

The catalogue follows llmlingua's issue list: empty input (its ZeroDivisionError), byte-level pruning that broke
CJK/emoji text, budgets that were missed silently, ``context_budget`` strings passed to ``eval``. Models are the
tiny random ones (mechanics, not quality); the HTTP half runs one loopback service for the whole module.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from ctxcompress_service import Settings, build_app, build_engine
from ctxcompress_service.testing import ServiceThread

from ctxcompress import CompressionResult, Compressor, CtxCompressError, InvalidInput, PayloadTooLarge
from ctxcompress.text.protect import _NUMBER
from tests.conftest import TINY_CLASSIFIER

EXTRACTIVE = ["llmlingua", "longllmlingua", "cpc", "tcra-semantic", "llmlingua2"]
QUESTION = "Which river flows into the Mediterranean?"
DOCS = [
    "The Nile is a major north-flowing river in northeastern Africa and flows into the Mediterranean Sea.",
    "Paris is the capital and most populous city of France, on the river Seine.",
    "The Amazon in South America is the largest river by discharge volume of water in the world.",
]
MIXED_SCRIPTS = [
    "東京は日本の首都です。人口は約1400万人です。富士山は標高3776メートルの山です。" * 3,
    "القاهرة هي عاصمة مصر وأكبر مدنها، ويبلغ عدد سكانها حوالي 10 ملايين نسمة. " * 3,
    "Family 👨‍👩‍👧‍👦 party 🎉🎉 flags 🇫🇷🇯🇵 skin 👍🏽 at 9:30 in Zürich, café crème. " * 3,
    "zero\u200bwidth\u200cjoiner\u200dmark\ufeff and\u00adsoft hyphen, combining e\u0301 a\u0308. " * 3,
    "control \x00 \x01 \x07 \x1b[31m red \x1b[0m \r\n tab\tbell\x7f end. " * 3,
]
STRUCTURED = [
    json.dumps({"user": {"name": "Zoë", "id": 12345, "tags": ["a", "b"]}, "url": "https://example.com/x?y=1"}),
    "```python\ndef add(a, b):\n    return a + b\n```\nThe function add returns the sum of two numbers. " * 2,
    "| city | population |\n|---|---|\n| Tokyo | 14,000,000 |\n| Cairo | 10,000,000 |\n| Zürich | 421,878 |\n",
    "See https://en.wikipedia.org/wiki/Nile?action=raw#History and mail info@example.org for 2024-05-01 data. " * 2,
]


def options_for(method: str) -> dict:
    return {"classifier": TINY_CLASSIFIER} if method == "llmlingua2" else {}


def is_subsequence(small: str, big: str) -> bool:
    remaining = iter(big)
    return all(ch in remaining for ch in small)


def check_extractive(result: CompressionResult, documents: list[str]) -> None:
    """Kept text is an in-order piece of its document; no replacement characters or split code points appear."""
    for kept in result.documents:
        assert is_subsequence(kept.text, documents[kept.index])
    if not any("\ufffd" in d for d in documents):
        assert "\ufffd" not in result.prompt
    result.prompt.encode("utf-8")  # raises on a lone surrogate


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def compressor(tiny_all_compressor) -> Compressor:
    return tiny_all_compressor


# ------------------------------------------------------------------------------------------------ library
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"documents": []}, "documents"),
        ({"documents": [""]}, "documents"),
        ({"documents": ["   ", "\n\t", "\u3000"]}, "documents"),
        ({"documents": "not a list"}, "documents"),
        ({"documents": [1, 2]}, "documents.0"),
        ({"documents": ["x"], "budget": {"rate": 0}}, "budget.rate"),
        ({"documents": ["x"], "budget": {"rate": -0.5}}, "budget.rate"),
        ({"documents": ["x"], "budget": {"rate": 1.5}}, "budget.rate"),
        ({"documents": ["x"], "budget": {"rate": float("nan")}}, "budget.rate"),
        ({"documents": ["x"], "budget": {"rate": float("inf")}}, "budget.rate"),
        ({"documents": ["x"], "budget": {"max_tokens": 0}}, "budget.max_tokens"),
        ({"documents": ["x"], "budget": {"max_tokens": -1}}, "budget.max_tokens"),
        ({"documents": ["x"], "budget": {"max_tokens": float("nan")}}, "budget.max_tokens"),
        ({"documents": ["x"], "budget": {}}, "budget"),
        ({"documents": ["x"], "budget": {"rate": 0.5, "max_tokens": 9}}, "budget"),
        ({"documents": DOCS, "question": QUESTION, "budget": {"max_tokens": 1}}, "budget"),
        ({"documents": ["x"], "method": "nope"}, "method"),
        ({"documents": ["x"], "method": "llmlingua", "options": {"context_budget": "+100"}}, "options.context_budget"),
        ({"documents": ["x"], "options": {"target_tokenizer": "no-such-encoding"}}, "options.target_tokenizer"),
        ({"documents": DOCS * 20, "method": "llmlingua", "options": {"scorer": "../../etc"}}, "options.scorer"),
        ({"documents": DOCS * 20, "method": "cpc", "options": {"encoder": "nope"}}, "options.encoder"),
        ({"documents": DOCS, "method": "longllmlingua", "question": "   "}, "question"),
        ({"documents": ["a\ud800b"]}, "documents.0"),
        ({"documents": ["ok"], "question": "\udfff"}, "question"),
        ({"documents": ["ok"], "options": {"force_tokens": ["\ud800"]}}, "options"),
    ],
)
def test_library_refuses_bad_requests_naming_the_field(compressor: Compressor, payload: dict, field: str) -> None:
    with pytest.raises(CtxCompressError) as info:  # InvalidInput, or UnknownModel for model names
        compressor.compress({"method": "llmlingua", "budget": {"rate": 0.5}} | payload)
    assert info.value.http_status == 422
    assert info.value.field == field and info.value.message


@pytest.mark.parametrize("budget", ["+100", "-100", "__import__('os').system('touch {sentinel}')", "1e3", "100"])
def test_a_context_budget_string_is_refused_never_run(compressor: Compressor, tmp_path: Path, budget: str) -> None:
    sentinel = tmp_path / "pwned"
    code = budget.format(sentinel=sentinel)
    for payload in ({"max_tokens": code}, {"rate": code}, code):
        with pytest.raises(InvalidInput) as info:
            compressor.compress({"method": "llmlingua", "documents": DOCS, "budget": payload})
        assert info.value.field.startswith("budget")
    assert not sentinel.exists()


@pytest.mark.parametrize("method", EXTRACTIVE)
def test_budget_of_one_token_and_above_the_input(compressor: Compressor, method: str) -> None:
    base = {"method": method, "documents": DOCS, "options": options_for(method)}
    if method == "longllmlingua":  # needs a question, which a 1-token budget cannot hold
        base["question"] = "?"
        one = {"max_tokens": 3}
    else:
        one = {"max_tokens": 1}
    tiny = compressor.compress(base | {"budget": one})
    assert tiny.compressed_tokens <= tiny.target_tokens
    check_extractive(tiny, DOCS)
    for budget in ({"max_tokens": 10**9}, {"rate": 1.0}):
        same = compressor.compress(base | {"budget": budget})
        assert same.ratio == 1.0 and [d.text for d in same.documents] == DOCS


@pytest.mark.parametrize("method", EXTRACTIVE)
def test_scripts_emoji_zero_width_and_control_characters(compressor: Compressor, method: str) -> None:
    result = compressor.compress(
        {
            "method": method,
            "documents": MIXED_SCRIPTS,
            "question": "首都はどこですか?",
            "budget": {"rate": 0.4},
            "options": options_for(method),
        }
    )
    assert result.compressed_tokens <= result.target_tokens
    check_extractive(result, MIXED_SCRIPTS)


@pytest.mark.parametrize("method", ["llmlingua", "longllmlingua"])
def test_digits_urls_code_and_forced_tokens_survive_token_pruning(compressor: Compressor, method: str) -> None:
    docs = [*STRUCTURED, *MIXED_SCRIPTS[:2]]
    force = ["Mediterranean", "Zürich"]
    options = {"force_tokens": force} | ({"coarse": False} if method == "llmlingua" else {"reorder": "original"})
    result = compressor.compress(
        {"method": method, "documents": docs, "question": "Which city?", "budget": {"rate": 0.6}, "options": options}
    )
    check_extractive(result, docs)
    for kept in result.documents:
        original = docs[kept.index]
        for number in _NUMBER.findall(original):
            assert number in kept.text, (number, kept.index)
        for literal in force:
            assert original.count(literal) == kept.text.count(literal)
        if kept.index == 0:
            assert "https://example.com/x?y=1" in kept.text and '"user":' in kept.text


def test_ten_thousand_documents(compressor: Compressor) -> None:
    docs = [f"Record {i}: the value of item {i} is {i * 7 % 1000}." for i in range(10_000)]
    result = compressor.compress({"method": "cpc", "documents": docs, "budget": {"max_tokens": 200}})
    assert 190 <= result.compressed_tokens <= 200 and result.origin_tokens > 100_000
    check_extractive(result, docs)
    same = compressor.compress({"method": "llmlingua", "documents": docs, "budget": {"rate": 1.0}})
    assert same.ratio == 1.0 and len(same.documents) == 10_000


def test_a_five_megabyte_document_is_refused_by_size_not_by_a_crash(compressor: Compressor) -> None:
    huge = "The Nile flows north. " * (5 * 1024 * 1024 // 22)
    with pytest.raises(PayloadTooLarge) as info:
        compressor.compress({"method": "llmlingua", "documents": [huge], "budget": {"rate": 0.5}})
    assert info.value.field == "documents" and "limit" in info.value.message


def test_compress_batch_returns_each_bad_request_its_own_error(compressor: Compressor) -> None:
    good = {"method": "llmlingua", "documents": DOCS, "budget": {"rate": 0.5}}
    bad = [{"documents": []}, {"documents": ["\ud800"]}, {"documents": ["x"], "budget": {"max_tokens": "+1"}}, 42]
    outputs = compressor.compress_batch([good, *bad, good], return_exceptions=True)
    assert isinstance(outputs[0], CompressionResult) and isinstance(outputs[-1], CompressionResult)
    assert all(isinstance(o, InvalidInput) for o in outputs[1:-1])


# ------------------------------------------------------------------------------------------------ HTTP
@pytest.fixture(scope="module")
def service(compressor: Compressor):
    settings = Settings(
        _env_file=None,
        device=["cpu"],
        preload_models=[],
        warmup=False,
        default_method="llmlingua",
        max_documents=1000,
        max_tokens_per_request=200_000,
        request_timeout_s=60,
    )
    with ServiceThread(build_app(settings, engine_factory=lambda s: build_engine(s, [compressor]))) as running:
        yield running.url


def post(url: str, path: str, payload: object = None, *, raw: bytes | None = None) -> httpx.Response:
    content = raw if raw is not None else json.dumps(payload, allow_nan=True).encode()
    return httpx.post(f"{url}{path}", content=content, headers={"content-type": "application/json"}, timeout=60)


def assert_client_error(response: httpx.Response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] and error["message"]
    if field is not None:
        assert error["field"] == field
    if status in (429, 503):
        assert int(response.headers["retry-after"]) >= 1
    return error


def body(**overrides: object) -> dict:
    return {"method": "llmlingua", "documents": DOCS, "question": QUESTION, "budget": {"rate": 0.5}} | overrides


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"documents": ["caf\xe9 cr\xe8me"]}', "body"),  # Latin-1, not UTF-8
        (b'{"documents": ["\xff\xfe\xfd"]}', "body"),
        (b'{"documents": ["\xed\xa0\x80 encoded surrogate"]}', "documents.0"),  # CESU-8: decoded to a surrogate
        (b'{"documents": ["lone \\ud800 escape"]}', "documents.0"),
        (b'{"documents": ["ok"], "question": "\\udc00"}', "question"),
        (b'{"documents": ["ok"], "budget": {"rate": NaN}}', "budget.rate"),
        (b'{"documents": ["ok"], "budget": {"rate": Infinity}}', "budget.rate"),
        (b'{"documents": ["ok"], "budget": {"max_tokens": 1e400}}', "budget.max_tokens"),
        (b'{"documents": ["ok"], "budget": "+100"}', "budget"),
        (b'{"documents": ["ok"], "budget": {"max_tokens": "+100"}}', "budget.max_tokens"),
        (b'{"documents": ["ok"], "budget": {"max_tokens": "__import__(\'os\').getcwd()"}}', "budget.max_tokens"),
        (b'{"documents": [', "body"),
        (b"", "body"),
        (b"null", "body"),
        (b"[]", "body"),
        (b'"documents"', "body"),
        (b"12", "body"),
        (b'{"documents": null}', "documents"),
        (b'{"documents": [null]}', "documents.0"),
        (b'{"documents": ["ok"], "options": null}', "options"),
        (b'{"documents": ["ok"], "options": []}', "options"),
        (b'{"documents": ["ok"], "method": 7}', "method"),
    ],
)
def test_http_bad_bodies_are_422_naming_the_field(service: str, raw: bytes, field: str) -> None:
    assert_client_error(post(service, "/v1/compress", raw=raw), 422, field)


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        (body(documents=[]), 422, "documents"),
        (body(documents=["", "  ", "\n"]), 422, "documents"),
        (body(documents=["x"] * 10_000), 413, "documents"),
        (body(documents=["The Nile flows north. " * (5 * 1024 * 1024 // 22)]), 413, "documents"),
        (body(budget={"rate": 0}), 422, "budget.rate"),
        (body(budget={"max_tokens": 0}), 422, "budget.max_tokens"),
        (body(budget={"max_tokens": -3}), 422, "budget.max_tokens"),
        (body(budget={"max_tokens": 1}), 422, "budget"),
        (body(method="nope"), 422, "method"),
        (body(method="../../etc/passwd"), 422, "method"),
        (body(options={"windw": 1}), 422, "options.windw"),
        (body(options={"context_budget": "+100"}), 422, "options.context_budget"),
        (body(documents=DOCS * 20, options={"scorer": "gpt2"}), 422, "options.scorer"),
        (body(documents=DOCS * 20, options={"scorer": "/etc/passwd"}), 422, "options.scorer"),
        (body(options={"target_tokenizer": "o200k_base"}), 422, "options.target_tokenizer"),
        (body(method="cpc", documents=DOCS * 20, options={"encoder": "x"}), 422, "options.encoder"),
        (body(method="longllmlingua", question=None), 422, "question"),
        (body(extra="field"), 422, "extra"),
    ],
)
def test_http_client_mistakes_get_a_clear_4xx(service: str, payload: dict, status: int, field: str) -> None:
    assert_client_error(post(service, "/v1/compress", payload), status, field)


def test_http_body_over_the_byte_limit_is_413(service: str) -> None:
    big = json.dumps(body(documents=["x" * (11 * 1024 * 1024)])).encode()
    assert_client_error(post(service, "/v1/compress", raw=big), 413)


@pytest.mark.parametrize("method", EXTRACTIVE)
def test_http_any_script_or_structure_compresses_to_valid_text(service: str, method: str) -> None:
    docs = MIXED_SCRIPTS + STRUCTURED
    response = post(service, "/v1/compress", body(method=method, documents=docs, options=options_for(method)))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    response.content.decode("utf-8")  # strict: no invalid UTF-8 on the wire
    result = CompressionResult.model_validate(response.json())
    assert result.compressed_tokens <= result.target_tokens
    check_extractive(result, docs)


def test_http_budget_above_the_input_returns_it_unchanged(service: str) -> None:
    for budget in ({"max_tokens": 10**12}, {"rate": 1}):
        response = post(service, "/v1/compress", body(budget=budget))
        assert response.status_code == 200, response.text
        assert response.json()["ratio"] == 1.0 and [d["text"] for d in response.json()["documents"]] == DOCS


def test_http_batch_items_fail_alone(service: str) -> None:
    items = [body(), {"documents": []}, 5, "x", None, body(documents=["\ud800"]), body(budget={"max_tokens": "9"})]
    response = post(service, "/v1/compress/batch", items)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["result"]["compressed_tokens"] > 0
    assert [r["error"]["type"] for r in results[1:]] == ["InvalidInput"] * 6
    for raw in (b"{}", b"null", b'"x"', b"[", b"\xff"):
        assert_client_error(post(service, "/v1/compress/batch", raw=raw), 422, "body")
    assert post(service, "/v1/compress/batch", []).json() == {"results": []}


@pytest.mark.parametrize(
    "payload",
    [
        {"model": "m", "messages": []},
        {"model": "m"},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"model": "m", "messages": [{"role": "user", "content": "doc\n\nq\ud800"}]},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "user": "\udfff"},
        {"model": "m", "messages": [{"role": "user", "content": "a\n\nb"}], "ctxcompress": {"rate": 0.5}},
        {"model": "m", "messages": [{"role": "user", "content": "a\n\nb"}], "ctxcompress": {"budget": "+100"}},
        {"model": "m", "messages": [{"role": "user", "content": 5}]},
    ],
)
def test_http_chat_bad_bodies_are_422(service: str, payload: dict) -> None:
    assert_client_error(post(service, "/v1/chat/completions", payload), 422)


def test_errors_never_echo_unencodable_text(service: str) -> None:
    """An unknown option whose *name* holds a lone surrogate is still reported as JSON (escaped)."""
    raw = b'{"documents": ["ok"], "method": "llmlingua", "options": {"bad\\ud800name": 1}}'
    error = assert_client_error(post(service, "/v1/compress", raw=raw), 422, "options")
    assert "surrogate" in error["message"]
    assert "\\ud800" in error["message"]  # escaped, so the body is valid UTF-8 JSON


def test_no_request_here_crashed_the_service(service: str) -> None:
    page = httpx.get(f"{service}/metrics").text
    server_errors = [line for line in page.splitlines() if 'status="5' in line and not line.startswith("#")]
    assert all(float(line.rsplit(" ", 1)[1]) == 0 for line in server_errors), server_errors
    assert httpx.get(f"{service}/readyz").status_code == 200
