"""One API key floods at 10x its request quota; another key's latency must not notice (issue 23's flood test).

The service runs in a subprocess (tiny model, one torch thread), so the test's client threads do not share its
GIL. The flooding key (30 requests/min, a burst of 30) sends 5 requests/s: once its burst is spent it gets 429 with
``Retry-After`` for ~9 of every 10 requests. The calm key's p50 latency is measured in blocks that alternate
between no flood and the flood, so that the machine's own drift affects both alike.
"""

from __future__ import annotations

import json
import statistics
import threading
import time

import httpx
import pytest

from tests.reliability.server import ServerProcess

DOCS = [
    "The Nile is a major north-flowing river in northeastern Africa and flows into the Mediterranean Sea.",
    "Paris is the capital and most populous city of France, on the river Seine.",
    "The Amazon in South America is the largest river by discharge volume of water in the world.",
]
BODY = {"method": "llmlingua", "documents": DOCS, "question": "Which river?", "budget": {"rate": 0.5}}
FLOOD_PER_S = 5.0  # 10x the flood key's 30 requests/min
BLOCKS = 4  # calm measurements alternate: alone, flooded, alone, ... (drift of the machine hits both)
SAMPLES_PER_BLOCK = 10


@pytest.fixture()
def server(tmp_path):  # noqa: ANN001, ANN201
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps([{"name": "flood", "key": "k-flood", "requests_per_minute": 30}, {"name": "calm", "key": "k-calm"}])
    )
    process = ServerProcess(tmp_path / "server.log", api_keys_file=str(keys)).start()
    yield process
    process.stop()


def calm_latencies(client: httpx.Client) -> list[float]:
    seconds = []
    for _ in range(SAMPLES_PER_BLOCK):
        started = time.perf_counter()
        assert client.post("/v1/compress", json=BODY).status_code == 200
        seconds.append(time.perf_counter() - started)
        time.sleep(0.05)
    return seconds


def test_a_key_flooding_at_ten_times_its_quota_leaves_another_keys_latency_alone(server) -> None:  # noqa: ANN001
    calm = httpx.Client(base_url=server.url, headers={"authorization": "Bearer k-calm"}, timeout=30)
    for _ in range(5):  # warm up
        calm.post("/v1/compress", json=BODY)

    statuses: list[int] = []
    stop, flood_on = threading.Event(), threading.Event()
    # One client shared by the flood's threads (httpx clients are thread-safe): a client per request cost the
    # test process an SSL context each, CPU and GIL time that its own calm measurement then paid for.
    flooding = httpx.Client(base_url=server.url, headers={"authorization": "Bearer k-flood"}, timeout=30)

    def flood_once() -> None:
        response = flooding.post("/v1/compress", json=BODY)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1

    def flood() -> None:
        while not stop.is_set():  # paced: FLOOD_PER_S requests a second while on, each in its own thread
            if flood_on.is_set():
                threading.Thread(target=flood_once, daemon=True).start()
            time.sleep(1 / FLOOD_PER_S)

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    alone: list[float] = []
    flooded: list[float] = []
    during: list[int] = []
    try:
        flood_on.set()
        deadline = time.monotonic() + 30
        while statuses.count(429) < 5:  # the burst is spent: the key is over its quota from here on
            assert time.monotonic() < deadline, f"no 429s for the flooding key: {statuses}"
            time.sleep(0.2)
        for _ in range(BLOCKS):
            flood_on.clear()
            time.sleep(0.3)  # the flood's requests in flight finish
            alone += calm_latencies(calm)
            flood_on.set()
            time.sleep(0.3)
            before = len(statuses)
            flooded += calm_latencies(calm)
            during += statuses[before:]
    finally:
        stop.set()
        flooder.join(5)
        time.sleep(0.5)  # the last flood requests finish before their client closes
        flooding.close()
    assert during and during.count(429) >= 0.7 * len(during), during  # refused while the calm key was measured
    alone_p50, flooded_p50 = statistics.median(alone), statistics.median(flooded)
    assert flooded_p50 <= 1.2 * alone_p50, (
        f"calm p50 {flooded_p50 * 1000:.1f} ms under the flood vs {alone_p50 * 1000:.1f} ms alone"
    )
    print(
        f"calm p50 alone {alone_p50 * 1000:.1f} ms, under a 10x flood {flooded_p50 * 1000:.1f} ms; "
        f"flood {len(statuses)} sent"
    )
