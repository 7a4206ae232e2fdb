"""Where a lone REST request's time goes beyond the library's: a timeline from the client's send through the app,
the engine's queue and its worker thread back to the client's receive.

The service runs in this process (uvicorn on a loopback port in a thread, settings from ``CTXCOMPRESS_*`` as
``serve`` has them, random weights from the kit's configs as trace_request.py); one client sends the kit's prompts
one at a time over a kept-alive connection. Each request's marks: client send, app entered (ASGI), engine submit,
prepared, worker thread start/end of the batch, the app's last body chunk handed to the server, client received.
Prints the median of each interval over the requests: the library's own work (the worker's batch) beside the rest.

There:  python3 eval/device/trace_rest.py --kit .carry/prof --requests 60
Here:   .venv/bin/python eval/device/trace_rest.py --device cpu --layers 1 --requests 40
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

MARKS = ["send", "app", "submit", "prepared", "worker_start", "worker_end", "app_sent", "received"]
INTERVALS = [
    ("send", "app", "client -> app (HTTP read, routing)"),
    ("app", "submit", "app -> engine submit (body parse, validation, middleware)"),
    ("submit", "prepared", "prepare (validate, count) on the event loop or a thread"),
    ("prepared", "worker_start", "queue -> worker thread (batcher, executor hand-off)"),
    ("worker_start", "worker_end", "the batch on the worker thread (the library's work)"),
    ("worker_end", "app_sent", "worker -> response body ready (future, serialisation, middleware)"),
    ("app_sent", "received", "body -> client (server write, socket, client read)"),
    ("send", "received", "client total"),
]


class Marks:
    """Per request (in flight one at a time), the time of each mark; the current request's dict is ``now``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, float]] = []
        self.now: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, name: str) -> None:
        with self._lock:
            self.now.setdefault(name, time.perf_counter())


def instrument(marks: Marks) -> None:
    import ctxcompress.serving.engine as engine_module
    from ctxcompress.compressor import Compressor
    from ctxcompress.serving.engine import AsyncCompressionEngine

    submit = AsyncCompressionEngine._submit

    async def traced_submit(self, request, timeout):  # noqa: ANN001, ANN202
        marks.mark("submit")
        return await submit(self, request, timeout)

    AsyncCompressionEngine._submit = traced_submit
    prepare = Compressor.prepare

    def traced_prepare(self, request):  # noqa: ANN001, ANN202
        out = prepare(self, request)
        marks.mark("prepared")
        return out

    Compressor.prepare = traced_prepare
    run_sealed = engine_module._run_sealed

    def traced_run_sealed(compressor, batch):  # noqa: ANN001, ANN202
        marks.mark("worker_start")
        try:
            return run_sealed(compressor, batch)
        finally:
            marks.mark("worker_end")

    engine_module._run_sealed = traced_run_sealed


def traced_app(app, marks: Marks):  # noqa: ANN001, ANN201
    """The ASGI app with two marks: entered, and the response's last body chunk handed to the server (before the
    send: after it the client may already have read the response and begun the next request)."""

    async def wrapper(scope, receive, send):  # noqa: ANN001, ANN202
        if scope["type"] != "http" or scope["path"] != "/v1/compress":
            return await app(scope, receive, send)
        marks.mark("app")

        async def traced_send(message):  # noqa: ANN001, ANN202
            if message["type"] == "http.response.body" and not message.get("more_body"):
                marks.mark("app_sent")
            await send(message)

        return await app(scope, receive, traced_send)

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, default=Path(".carry/prof"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--layers", type=int, help="that many layers per model (host steps on a CPU: fast passes)")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--out", type=Path, help="also write every request's marks as JSON")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ctxcompress_eval.random_models import use_random_models

    use_random_models(args.kit, args.layers)
    os.environ.setdefault("CTXCOMPRESS_CHUNK_CACHE_MB", "0")
    os.environ.setdefault("CTXCOMPRESS_PRELOAD_MODELS", "smollm2-135m,minilm-l6")
    os.environ["CTXCOMPRESS_DEVICE"] = json.dumps([args.device])
    import uvicorn
    from ctxcompress_service import build_app

    marks = Marks()
    instrument(marks)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(traced_app(build_app(), marks), port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for _ in range(600):  # start-up: models load and warm up before /readyz answers 200
        try:
            connection.request("GET", "/readyz")
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                break
        except OSError:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        time.sleep(0.5)
    prompts = [json.loads(line) for line in (args.kit / "prompts.jsonl").open()]
    bodies = [json.dumps({**p, "method": "hybrid", "budget": {"rate": 0.25}}).encode() for p in prompts]
    headers = {"Content-Type": "application/json"}
    for i in range(len(bodies) + args.requests):  # the first pass over the prompts warms up
        marks.now = {}
        marks.mark("send")
        connection.request("POST", "/v1/compress", body=bodies[i % len(bodies)], headers=headers)
        response = connection.getresponse()
        payload = response.read()
        marks.mark("received")
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status}: {payload[:300]!r}")
        if i >= len(bodies):
            marks.requests.append(marks.now)
    server.should_exit = True
    complete = [r for r in marks.requests if all(m in r for m in MARKS)]
    print(f"{len(complete)} of {len(marks.requests)} requests with every mark; medians (ms):")
    for start, end, label in INTERVALS:
        values = [(r[end] - r[start]) * 1000 for r in complete]
        print(f"  {statistics.median(values):7.2f}  {label}")
    if args.out:
        args.out.write_text(json.dumps(marks.requests))


if __name__ == "__main__":
    main()
