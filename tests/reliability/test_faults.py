"""Faults: a model worker that crashes (through the FaultInjectingCompressor test hook), an upstream that dies
mid-stream in proxy mode, SIGTERM under load. The service answers each with a clean error and keeps serving."""

from __future__ import annotations

import socket
import socketserver
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from ctxcompress_service import Settings, build_app, build_engine
from ctxcompress_service.testing import FAULT_MARKER, FaultInjectingCompressor, ServiceThread

from ctxcompress.pool import ModelPool
from tests.reliability.drills import drill_sigterm_under_load

DOCS = [
    "The Nile is a major north-flowing river in northeastern Africa and flows into the Mediterranean Sea.",
    "Paris is the capital and most populous city of France, on the river Seine.",
    "The Amazon in South America is the largest river by discharge volume of water in the world.",
]


def body(i: int, *, crash: bool = False) -> dict:
    question = f"Which river flows north? ({i}{' ' + FAULT_MARKER if crash else ''})"
    return {"method": "llmlingua", "documents": DOCS, "question": question, "budget": {"rate": 0.5}}


def service_for(tiny_scorer, **overrides: object) -> ServiceThread:  # noqa: ANN001
    pool = ModelPool(device="cpu")
    pool.register("scorer", "smollm2-135m", tiny_scorer)
    compressor = FaultInjectingCompressor(pool=pool)
    values = {"device": ["cpu"], "preload_models": [], "warmup": False} | overrides
    app = build_app(Settings(_env_file=None, **values), engine_factory=lambda s: build_engine(s, [compressor]))
    return ServiceThread(app)


def test_a_crashing_request_gets_500_json_and_its_batch_mates_are_served(tiny_scorer) -> None:  # noqa: ANN001
    with service_for(tiny_scorer, max_wait_ms=300) as service:
        url = f"{service.url}/v1/compress"
        payloads = [body(i, crash=i in (0, 3)) for i in range(6)]
        with ThreadPoolExecutor(len(payloads)) as pool:  # within max_wait_ms: they share batches
            responses = list(pool.map(lambda p: httpx.post(url, json=p, timeout=60), payloads))
        for i, response in enumerate(responses):
            if i in (0, 3):
                assert response.status_code == 500
                assert response.json()["error"]["type"] == "ModelError"
                assert "InjectedFault" in response.json()["error"]["message"]
            else:
                assert response.status_code == 200, response.text
                assert response.json()["prompt"].endswith(payloads[i]["question"])
        alone = httpx.post(url, json=body(9, crash=True), timeout=60)
        assert alone.status_code == 500 and alone.json()["error"]["type"] == "ModelError"
        assert httpx.get(f"{service.url}/readyz").status_code == 200
        assert httpx.post(url, json=body(10), timeout=60).status_code == 200


class _TornStream(socketserver.BaseRequestHandler):
    """An upstream that starts a chunked SSE response, sends two events, then drops the connection."""

    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.request.recv(65536)
        head, rest = data.split(b"\r\n\r\n", 1)
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(rest) < length:
            rest += self.request.recv(65536)
        self.request.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        for word in (b"The ", b"Nile"):
            event = b'data: {"choices": [{"delta": {"content": "' + word + b'"}}]}\n\n'
            self.request.sendall(b"%x\r\n%s\r\n" % (len(event), event))
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.request.close()  # RST mid-body: no terminating chunk


@pytest.fixture()
def torn_upstream():  # noqa: ANN201
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _TornStream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_upstream_dying_mid_stream_ends_the_stream_with_an_error_event(tiny_scorer, torn_upstream: str) -> None:  # noqa: ANN001
    chat = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "\n\n".join([*DOCS, "Why?"])}]}
    with service_for(tiny_scorer, upstream_url=torn_upstream) as service:
        with httpx.stream("POST", f"{service.url}/v1/chat/completions", json=chat, timeout=60) as response:
            assert response.status_code == 200
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]  # no transport error
        assert len(events) == 3 and '"Nile"' in events[1]
        assert '"type": "UpstreamError"' in events[2] and "mid-stream" in events[2]
        broken = httpx.post(f"{service.url}/v1/chat/completions", json=chat | {"stream": False}, timeout=60)
        assert broken.status_code == 502 and broken.json()["error"]["type"] == "UpstreamError"
        assert httpx.get(f"{service.url}/readyz").status_code == 200


def test_sigterm_under_load_answers_every_accepted_request(tmp_path: Path) -> None:
    report = drill_sigterm_under_load(tmp_path, concurrency=8, sigterm_after_s=4.0)
    assert report["reconcile"]["lost"] == 0 and report["reconcile"]["duplicated"] == 0, report
    assert report["answered_200_of_those"] == report["sent_before_sigterm"] > 0, report
    assert report["engine_drained_and_stopped"] and report["passed"], report
