"""Load generator that accounts for every request (loopback only, bounded by count and time).

Each request carries a unique id, both as ``x-request-id`` (the server logs it) and inside its question (the
result's prompt ends with the question, so a result delivered to the wrong caller is caught). Arrivals are
open-loop at a fixed rate (``rate``) or closed-loop (``concurrency`` callers); nothing is retried, so every
429/503 is counted as rejected. :func:`reconcile` compares the client's record with the server's access log:
an id the server answered 200 that the client never received is *lost*; an id logged twice is *duplicated*.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gzip
import json
import multiprocessing
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
NQ = ROOT.parent / "shared" / "data" / "nq_multidoc" / "20docs" / "gold_at_9.jsonl.gz"

__all__ = [
    "CONNECTIONS_PER_CLIENT",
    "Outcome",
    "Phase",
    "make_requests",
    "reconcile",
    "run_phase",
    "run_phase_in_processes",
    "summarize",
]

CONNECTIONS_PER_CLIENT = 64


@dataclass
class Outcome:
    id: str
    sent_at: float
    status: int | None = None  # None: no HTTP response (transport error or client timeout)
    latency_s: float = 0.0
    retry_after: str | None = None
    error: str | None = None  # transport error class, or "mismatch" for a result of another request
    error_type: str | None = None  # the service's error type for 4xx/5xx
    pool_wait_s: float | None = None  # waiting in the client's pool for a free connection
    connect_s: float | None = None  # opening a new TCP connection (None: a kept-alive one was reused)


class _Timeline:
    """httpx's ``trace`` extension: the first time each of the request's transport events happened."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        self.marks.setdefault(event, time.monotonic())

    def fill(self, outcome: Outcome) -> None:
        """Split the client's side of the latency: pool wait, then a new connection's TCP connect."""
        connect_start = self.marks.get("connection.connect_tcp.started")
        connect_end = self.marks.get("connection.connect_tcp.complete")
        on_wire = self.marks.get("http11.send_request_headers.started")
        first = connect_start if connect_start is not None else on_wire
        if first is not None:
            outcome.pool_wait_s = first - outcome.sent_at
        if connect_start is not None:
            outcome.connect_s = (connect_end if connect_end is not None else time.monotonic()) - connect_start


@dataclass
class Phase:
    name: str
    seconds: float
    rate: float | None = None  # open loop: arrivals per second
    concurrency: int | None = None  # closed loop: callers
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0  # CPU time of this load generator's process during the phase


def make_requests(
    n: int = 64, docs: int = 5, rate: float = 0.4, method: str = "llmlingua", data: Path = NQ
) -> list[dict[str, Any]]:
    """Request templates: NQ rows from ``data`` (``docs`` documents each) when it exists, else synthetic."""
    templates = []
    if data.exists():
        with gzip.open(data, "rt", encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                documents = [f"Document [{i}](Title: {c['title']}) {c['text']}" for i, c in enumerate(row["ctxs"], 1)]
                templates.append({"documents": documents[:docs], "question": row["question"]})
                if len(templates) == n:
                    break
    while len(templates) < n:
        k = len(templates)
        documents = [
            f"Record {k}.{j}: the river number {j} flows {k + j} km north into lake {j}. " * 6 for j in range(docs)
        ]
        templates.append({"documents": documents, "question": f"Which river flows {k} km?"})
    return [{"method": method, "budget": {"rate": rate}} | t for t in templates]


async def _one(client: httpx.AsyncClient, template: dict[str, Any], rid: str, timeout_s: float) -> Outcome:
    body = template | {"question": f"{template['question']} [{rid}]"}
    outcome = Outcome(rid, time.monotonic())
    timeline = _Timeline()
    try:
        response = await client.post(
            "/v1/compress",
            json=body,
            headers={"x-request-id": rid},
            timeout=timeout_s,
            extensions={"trace": timeline},
        )
    except httpx.HTTPError as exc:
        outcome.error = type(exc).__name__
        outcome.latency_s = time.monotonic() - outcome.sent_at
        timeline.fill(outcome)
        return outcome
    outcome.latency_s = time.monotonic() - outcome.sent_at
    timeline.fill(outcome)
    outcome.status = response.status_code
    outcome.retry_after = response.headers.get("retry-after")
    try:
        payload = response.json()
    except ValueError:
        outcome.error = "not-json"
        return outcome
    if response.status_code == 200:
        if not str(payload.get("prompt", "")).endswith(f"[{rid}]"):
            outcome.error = "mismatch"
    else:
        outcome.error_type = (payload.get("error") or {}).get("type")
    return outcome


async def run_phase(
    url: str,
    phase: Phase,
    requests: list[dict[str, Any]],
    *,
    start_index: int = 0,
    max_outstanding: int = 1024,
    timeout_s: float = 120.0,
    on_tick: Callable[[float], None] | None = None,
) -> Phase:
    """Run one phase for ``phase.seconds``; in-flight requests are awaited (never abandoned) before returning.

    Requests are spread over several clients of at most :data:`CONNECTIONS_PER_CLIENT` connections each: httpcore's
    pool does bookkeeping over all its connections on every request (httpcore 1.0; encode/httpcore#1035), so one
    client holding ~2,000 connections became the bottleneck of the H200 soak's overload phase."""
    shards = max(1, -(-max_outstanding // CONNECTIONS_PER_CLIENT))
    per_client = -(-max_outstanding // shards)
    limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, limits=limits)) for _ in range(shards)
        ]
        started, cpu_started = time.monotonic(), time.process_time()
        counter = start_index
        tasks: set[asyncio.Task[Outcome]] = set()
        done: list[Outcome] = []

        in_flight = [0] * len(clients)

        def spawn() -> None:
            # the client with the fewest requests in flight: no client queues requests in its own pool while
            # another has idle connections (requests to a slower server process finish later)
            nonlocal counter
            rid = f"{phase.name}-{counter:08d}"
            slot = min(range(len(clients)), key=in_flight.__getitem__)
            in_flight[slot] += 1
            task = asyncio.create_task(_one(clients[slot], requests[counter % len(requests)], rid, timeout_s))
            counter += 1
            tasks.add(task)

            def finished(t: asyncio.Task[Outcome]) -> None:
                in_flight[slot] -= 1
                tasks.discard(t)
                done.append(t.result())

            task.add_done_callback(finished)

        if phase.rate:
            interval, next_at, last_tick = 1.0 / phase.rate, started, started
            while (now := time.monotonic()) - started < phase.seconds:
                while next_at <= now and len(tasks) < max_outstanding:
                    spawn()
                    next_at += interval
                if on_tick and now - last_tick >= 1.0:
                    on_tick(now - started)
                    last_tick = now
                await asyncio.sleep(min(max(next_at - time.monotonic(), 0.0), 0.05))
        else:

            async def caller(own: httpx.AsyncClient) -> None:
                nonlocal counter
                while time.monotonic() - started < phase.seconds:
                    rid = f"{phase.name}-{counter:08d}"
                    template = requests[counter % len(requests)]
                    counter += 1
                    outcome = await _one(own, template, rid, timeout_s)
                    done.append(outcome)
                    if outcome.status is None:  # refused (e.g. the server is stopping): do not spin
                        await asyncio.sleep(0.1)

            callers = phase.concurrency or 1
            await asyncio.gather(*(caller(clients[i % len(clients)]) for i in range(callers)))
        if tasks:
            await asyncio.gather(*list(tasks), return_exceptions=True)
        phase.wall_s = time.monotonic() - started
        phase.client_cpu_s = time.process_time() - cpu_started
        phase.outcomes = sorted(done, key=lambda o: o.id)
    return phase


def run_phase_in_processes(
    url: str,
    phase: Phase,
    requests: list[dict[str, Any]],
    *,
    processes: int,
    start_index: int = 0,
    max_outstanding: int = 1024,
    timeout_s: float = 120.0,
) -> Phase:
    """:func:`run_phase` spread over ``processes`` load-generator processes, each with its own event loop and
    clients and an equal share of the rate, callers and outstanding bound; their outcomes are merged.

    One Python process drives a few hundred requests a second at most: past that, its own event loop's lag shows
    up as client-side waits (the ``client_cpu_pct`` of :func:`summarize` nears 100)."""
    if processes <= 1:
        return _run_phase_share(url, phase, requests, start_index, max_outstanding, timeout_s)
    shares = [
        Phase(
            phase.name,
            phase.seconds,
            rate=phase.rate / processes if phase.rate else None,
            concurrency=-(-phase.concurrency // processes) if phase.concurrency else None,
        )
        for _ in range(processes)
    ]
    ids_apart = 10**7  # each process numbers its requests from its own offset: ids stay unique
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = [
            pool.submit(
                _run_phase_share,
                url,
                share,
                requests,
                start_index + i * ids_apart,
                max(1, max_outstanding // processes),
                timeout_s,
            )
            for i, share in enumerate(shares)
        ]
        done = [future.result() for future in futures]
    merged = Phase(phase.name, phase.seconds, rate=phase.rate, concurrency=phase.concurrency)
    merged.outcomes = sorted((o for share in done for o in share.outcomes), key=lambda o: o.id)
    merged.wall_s = max(share.wall_s for share in done)
    merged.client_cpu_s = sum(share.client_cpu_s for share in done)
    return merged


def _run_phase_share(
    url: str, phase: Phase, requests: list[dict[str, Any]], start_index: int, max_outstanding: int, timeout_s: float
) -> Phase:
    return asyncio.run(
        run_phase(url, phase, requests, start_index=start_index, max_outstanding=max_outstanding, timeout_s=timeout_s)
    )


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(phase: Phase) -> dict[str, Any]:
    """Counts by outcome, latency of served requests (ms) and served throughput."""
    outcomes = phase.outcomes
    served = [o for o in outcomes if o.status == 200 and o.error is None]
    rejected = [o for o in outcomes if o.status in (429, 503)]
    latencies = [o.latency_s for o in served]
    return {
        "phase": phase.name,
        "offered": f"{phase.rate:g} req/s open loop" if phase.rate else f"{phase.concurrency} callers closed loop",
        "seconds": round(phase.wall_s, 1),
        "sent": len(outcomes),
        "served": len(served),
        "rejected": len(rejected),
        "rejected_without_retry_after": sum(o.retry_after is None for o in rejected),
        "client_errors_other": sum(
            o.status is not None and 400 <= o.status < 500 and o.status != 429 for o in outcomes
        ),
        "server_errors": sum(o.status is not None and o.status >= 500 and o.status != 503 for o in outcomes),
        "no_response": sum(o.status is None for o in outcomes),
        "mismatched": sum(o.error == "mismatch" for o in outcomes),
        "throughput_rps": round(len(served) / phase.wall_s, 2) if phase.wall_s else 0.0,
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "statuses": dict(Counter(str(o.status) for o in outcomes)),
        "errors": dict(Counter(o.error for o in outcomes if o.error)),
        # % of one core, summed over the generator's processes; near 100 per process: its event loop was saturated,
        # and its own lag is in every latency below
        "client_cpu_pct": round(100 * phase.client_cpu_s / phase.wall_s, 1) if phase.wall_s else None,
        "pool_wait_p50_ms": _ms(_percentile([o.pool_wait_s for o in served if o.pool_wait_s is not None], 0.5)),
        "pool_wait_p99_ms": _ms(_percentile([o.pool_wait_s for o in served if o.pool_wait_s is not None], 0.99)),
        "new_connections": sum(o.connect_s is not None for o in outcomes),
        "connect_p99_ms": _ms(_percentile([o.connect_s for o in outcomes if o.connect_s is not None], 0.99)),
        "connect_max_ms": _ms(max((o.connect_s for o in outcomes if o.connect_s is not None), default=None)),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def reconcile(outcomes: list[Outcome], access_log: list[dict[str, Any]]) -> dict[str, int]:
    """Cross-check client outcomes with the server's access log (``request_id`` → status)."""
    logged = Counter(r["request_id"] for r in access_log if r.get("route") == "/v1/compress")
    status = {r["request_id"]: r["status"] for r in access_log if r.get("route") == "/v1/compress"}
    client = {o.id: o for o in outcomes}
    accepted = [rid for rid, s in status.items() if rid in client and s not in (429, 503)]
    lost = [rid for rid in accepted if client[rid].status != status[rid]]
    return {
        "server_logged": sum(1 for rid in status if rid in client),
        "accepted": len(accepted),
        "lost": len(lost),
        "duplicated": sum(n - 1 for rid, n in logged.items() if rid in client and n > 1),
        "unlogged_responses": sum(1 for o in outcomes if o.status is not None and o.id not in status),
    }


def outcomes_json(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [asdict(o) for o in outcomes]
