"""Fault drills against a real service process: an injected model-worker crash, the upstream killed mid-stream
(proxy mode), SIGTERM under load. Each returns a dict of what happened and ``passed``."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.reliability.load import Phase, make_requests, reconcile, run_phase, summarize
from tests.reliability.server import ROOT, ServerProcess, free_port

__all__ = ["drill_sigterm_under_load", "drill_upstream_killed", "drill_worker_exception"]

FAULT_MARKER = "ctxcompress-injected-fault"  # ctxcompress_service.testing.FAULT_MARKER


def drill_worker_exception(workdir: Path, *, good: int = 12, bad: int = 4) -> dict[str, Any]:
    """Concurrent requests, ``bad`` of them crash the model worker: those get 500 ModelError JSON, the rest 200,
    and the service stays ready and keeps serving."""
    requests = make_requests(n=good + bad, docs=3)
    for i in range(bad):
        requests[i]["question"] += f" {FAULT_MARKER}"
    with ServerProcess(workdir / "worker-exception.log", fault_injection=True, max_wait_ms=200) as server:
        with ThreadPoolExecutor(good + bad) as pool:
            responses = list(pool.map(lambda b: httpx.post(f"{server.url}/v1/compress", json=b, timeout=120), requests))
        bad_out = [(r.status_code, r.json()["error"]["type"]) for r in responses[:bad]]
        good_out = [r.status_code for r in responses[bad:]]
        ready = httpx.get(f"{server.url}/readyz").status_code
        after = httpx.post(f"{server.url}/v1/compress", json=requests[-1], timeout=120).status_code
    passed = all(o == (500, "ModelError") for o in bad_out) and set(good_out) == {200} and (ready, after) == (200, 200)
    return {"drill": "model worker exception (injected)", "crashing_requests": bad_out,
            "other_requests": {str(s): good_out.count(s) for s in set(good_out)}, "readyz_after": ready,
            "next_request_after": after, "passed": passed}  # fmt: skip


def drill_upstream_killed(workdir: Path, *, kill_after_events: int = 3) -> dict[str, Any]:
    """Proxy streaming from an upstream process that is SIGKILLed mid-stream: the client gets the events sent so
    far, then one SSE error event and a complete response; the next call is a 502; the service stays ready."""
    port = free_port()
    command = [sys.executable, "-m", "tests.reliability.upstream", "--port", str(port), "--delay-s", "0.1"]
    upstream = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Doc one.\n\nDoc two.\n\nWhy?"}]}
        with ServerProcess(workdir / "upstream-killed.log", upstream_url=f"http://127.0.0.1:{port}/v1") as server:
            events: list[str] = []
            error: str | None = None
            with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as response:
                status = response.status_code
                try:
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            events.append(line[6:])
                            if len(events) == kill_after_events:
                                upstream.kill()
                except httpx.HTTPError as exc:  # a torn stream: what the drill must not see
                    error = type(exc).__name__
            upstream.wait(10)
            last = json.loads(events[-1]) if events and events[-1].startswith("{") else {}
            after = httpx.post(f"{server.url}/v1/chat/completions", json=body | {"stream": False}, timeout=60)
            ready = httpx.get(f"{server.url}/readyz").status_code
    finally:
        if upstream.poll() is None:
            upstream.kill()
    error_event = (last.get("error") or {}).get("type")
    passed = status == 200 and error is None and error_event == "UpstreamError" and after.status_code == 502
    return {"drill": "upstream killed mid-stream (proxy)", "status": status, "events_before_kill": kill_after_events,
            "events_received": len(events), "last_event_error_type": error_event, "client_transport_error": error,
            "next_call": [after.status_code, after.json()["error"]["type"]], "readyz_after": ready,
            "passed": passed and ready == 200}  # fmt: skip


def drill_sigterm_under_load(workdir: Path, *, concurrency: int = 24, sigterm_after_s: float = 8.0) -> dict[str, Any]:
    """Closed-loop load, SIGTERM mid-way: every request the server accepted is answered (200) and received; new
    connections are refused; the process exits after draining."""
    server = ServerProcess(workdir / "sigterm.log", max_concurrent_requests=64, graceful_shutdown_s=60)
    server.start()
    requests = make_requests(docs=3)
    phase = Phase("sigterm", sigterm_after_s + 15, concurrency=concurrency)

    exited: list[float] = []

    async def load_then_signal() -> float:
        task = asyncio.create_task(run_phase(server.url, phase, requests, timeout_s=120))
        await asyncio.sleep(sigterm_after_s)
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        waiter = threading.Thread(target=lambda: (server.wait(120), exited.append(time.monotonic())), daemon=True)
        waiter.start()
        await task
        waiter.join(120)
        return signalled

    signalled = asyncio.run(load_then_signal())
    code = server.wait(120)
    exited_s = (exited[0] if exited else time.monotonic()) - signalled
    access = server.access_log()
    stopped = any(r.get("msg") == "stopped" for r in _records(server.log_path))
    after = [o for o in phase.outcomes if o.sent_at > signalled + 1.0]
    rec = reconcile(phase.outcomes, access)
    summary = summarize(phase)
    passed = rec["lost"] == 0 and rec["duplicated"] == 0 and summary["server_errors"] == 0 and stopped
    before = [o for o in phase.outcomes if o.sent_at < signalled]
    passed = passed and summary["mismatched"] == 0 and all(o.status == 200 for o in before)
    return {"drill": "SIGTERM under load", "concurrency": concurrency, "sigterm_after_s": sigterm_after_s,
            "served": summary["served"], "statuses": summary["statuses"], "reconcile": rec,
            "sent_before_sigterm": len(before), "answered_200_of_those": sum(o.status == 200 for o in before),
            "in_flight_at_sigterm": sum(o.sent_at + o.latency_s > signalled for o in before),
            "sent_1s_after_sigterm": len(after), "refused_1s_after_sigterm": sum(o.status is None for o in after),
            "engine_drained_and_stopped": stopped,
            "exit_code": code, "seconds_to_exit": round(exited_s, 1), "passed": passed}  # fmt: skip


def _records(path: Path) -> list[dict[str, Any]]:
    out = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                out.append(json.loads(raw))
            except ValueError:
                pass
    return out
