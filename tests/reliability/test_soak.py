"""A short soak (CI size; the 10-minute run is ``scripts/soak_test.py``): a service process on the tiny model at
1x then 2x its measured capacity, queue bound 8. Overload is refused with 429 + Retry-After, nothing accepted is
lost or duplicated, no 5xx, and results reach their own callers; the client's pool wait and connect time are
reported apart from the server's; the load comes from two generator processes whose records merge."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.soak import run_soak, tiny_target


def test_short_soak_at_and_above_saturation(tmp_path: Path) -> None:
    report = run_soak(
        tiny_target(tmp_path, max_concurrent_requests=8), seconds=16, calibrate_s=6, rss_every_s=2, client_processes=2
    )
    total, above = report["total"], report["phases"][1]
    assert total["served"] > 0 and above["rejected"] > 0, report
    assert total["rejected_without_retry_after"] == 0 and set(total["statuses"]) <= {"200", "429"}, report
    assert total["server_errors"] == total["no_response"] == total["mismatched"] == 0, report
    assert report["reconcile"]["lost"] == report["reconcile"]["duplicated"] == 0, report
    assert report["reconcile"]["server_logged"] == total["sent"], report
    assert 0 < report["rss_mb"]["peak"] < 4096
    # the client's side of the wait is measured apart from the server's: every phase opened connections, and a
    # request's pool wait and connect time are parts of its latency
    for phase in report["phases"]:
        assert phase["new_connections"] > 0 and phase["pool_wait_p50_ms"] is not None, phase
        assert phase["on_server_outside_p50_ms"] <= phase["outside_p50_ms"], phase
        assert 0 < phase["client_cpu_pct"] < 400, phase
