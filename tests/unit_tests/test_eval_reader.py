"""The optional reader against a tiny OpenAI-compatible HTTP server started in the test."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ctxcompress_eval.baselines import make_baseline
from ctxcompress_eval.datasets import load_nq
from ctxcompress_eval.reader import Reader, chat_url

from tests.conftest import DATA_DIR


class _Server:
    """Replies with the prompt itself (an "oracle" reader), or HTTP 500 when ``fail`` is set."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.headers: list[str | None] = []
        self.fail = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                owner.headers.append(self.headers.get("Authorization"))
                if owner.fail or self.path != "/v1/chat/completions":
                    self.send_response(500)
                    self.end_headers()
                    return
                reply = {"choices": [{"message": {"role": "assistant", "content": body["messages"][0]["content"]}}]}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture()
def server():
    srv = _Server()
    yield srv
    srv.httpd.shutdown()


def test_chat_url():
    assert chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"


def test_oracle_reader_accuracy_equals_answer_retention_and_is_cached(server, tmp_path):
    examples = load_nq(DATA_DIR, docs=20, positions=[0, 19], limit=1)
    outputs = make_baseline("truncate").run(examples, 0.25)  # keeps the head: gold at 0 kept, at 19 dropped
    reader = Reader(server.url, "echo-model", api_key="k")
    reader.judge("nq20", "truncate", 0.25, outputs, {e.id: e for e in examples}, tmp_path)
    assert [o.extra["reader_correct"] for o in outputs] == [True, False]
    assert server.requests[0]["model"] == "echo-model" and server.requests[0]["temperature"] == 0.0
    assert server.headers[0] == "Bearer k"
    reader.judge("nq20", "truncate", 0.25, outputs, {e.id: e for e in examples}, tmp_path)
    assert len(server.requests) == 2  # second pass answered from the cache


def test_reader_errors_are_recorded_not_raised(server, tmp_path):
    server.fail = True
    examples = load_nq(DATA_DIR, docs=20, positions=[0], limit=1)
    outputs = make_baseline("truncate").run(examples, 0.5)
    Reader(server.url, "m").judge("nq20", "truncate", 0.5, outputs, {e.id: e for e in examples}, tmp_path)
    assert outputs[0].extra["reader_correct"] is None
    assert "500" in outputs[0].extra["reader_error"]
