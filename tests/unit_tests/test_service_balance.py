"""Keep-alive connections spread over worker processes: a crowded process answers ``Connection: close``, the real
server (uvicorn's h11 protocol) then closes the connection, and the peers' mean load is read from the metric files
every process writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
from ctxcompress_service.balance import ConnectionBalancer, PeerLoad
from ctxcompress_service.testing import ServiceThread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def _client_port_app(peers: PeerLoad, own: list[int]) -> ConnectionBalancer:
    async def whoami(request: Request) -> JSONResponse:
        assert request.client is not None
        return JSONResponse({"port": request.client.port})

    return ConnectionBalancer(Starlette(routes=[Route("/", whoami)]), peers=peers, in_flight=lambda: own[0])


def test_crowded_means_well_above_the_peers_mean() -> None:
    assert not PeerLoad().crowded(1_000)  # single process: the mean is unknown, never crowded
    peers = PeerLoad(mean_in_flight=4.0)
    assert not peers.crowded(8) and peers.crowded(9)  # 1.5 x 4 + 2


def test_a_crowded_process_closes_keep_alive_connections_and_callers_reconnect() -> None:
    peers, own = PeerLoad(mean_in_flight=2.0), [0]
    app = _client_port_app(peers, own)
    with ServiceThread(app) as service, httpx.Client(base_url=service.url) as client:
        calm = [client.get("/") for _ in range(3)]
        assert all("close" not in r.headers.get("connection", "") for r in calm)
        assert len({r.json()["port"] for r in calm}) == 1  # one kept-alive connection
        own[0] = 20
        crowded = [client.get("/") for _ in range(3)]
        assert all(r.headers["connection"] == "close" for r in crowded)
        assert len({r.json()["port"] for r in crowded}) == 3  # the server closed each one; a new one each time
    assert app.closed == 3


def test_peers_mean_is_read_from_every_process_metric_files(tmp_path) -> None:  # noqa: ANN001
    def worker(in_flight: int, read: bool = False) -> str:
        code = (
            "from ctxcompress_service.metrics import Metrics\n"
            f"m = Metrics(lambda: None)\nm.in_flight.set({in_flight})\n"
            + ("print(m.mean_in_flight())\n" if read else "")
        )
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    worker(2)
    worker(10)
    assert json.loads(worker(3, read=True)) == 5.0  # (2 + 10 + 3) / 3 processes
