"""Soak test: the service under sustained load at and above saturation on CPU (loopback only, bounded).

Starts the service on a tiny random model (``tests/reliability/server.py``: llmlingua, 3 NQ documents per request,
queue bound 32), measures its capacity, then offers 1x capacity for half the time and 2x for the other half.
Prints throughput, p50/p99, served / rejected (429/503 with Retry-After) / lost / duplicated and RSS over time;
writes everything as JSON.

Usage:
    nice -n 10 .venv/bin/python scripts/soak_test.py --minutes 10 --out eval/results/reliability_cpu/soak.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def print_report(report: dict) -> None:
    print(f"capacity (closed loop): {report['capacity_rps']} req/s; setup: {report['setup']}")
    print(
        f"{'phase':<8} {'offered':<26} {'sent':>6} {'served':>6} {'rejected':>8} {'5xx':>4} {'no resp':>7} "
        f"{'req/s':>6} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for row in [*report["phases"], report["total"]]:
        print(
            f"{row['phase']:<8} {row['offered']:<26} {row['sent']:>6} {row['served']:>6} {row['rejected']:>8} "
            f"{row['server_errors']:>4} {row['no_response']:>7} {row['throughput_rps']:>6} {row['p50_ms']!s:>8} "
            f"{row['p99_ms']!s:>8}"
        )
    rec, rss = report["reconcile"], report["rss_mb"]
    print(
        f"accepted {rec['accepted']}, lost {rec['lost']}, duplicated {rec['duplicated']}, "
        f"mismatched {report['total']['mismatched']}, rejected without Retry-After "
        f"{report['total']['rejected_without_retry_after']}"
    )
    print(
        f"RSS MiB: start {rss['start']}, peak {rss['peak']}, max in first quarter {rss['first_quarter_max']}, "
        f"max in last quarter {rss['last_quarter_max']}; server exit code {report['server_exit_code']}"
    )


def main() -> int:
    from tests.reliability.soak import run_soak

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--calibrate-seconds", type=float, default=20.0)
    parser.add_argument("--docs", type=int, default=3)
    parser.add_argument("--max-concurrent-requests", type=int, default=32)
    parser.add_argument("--out", type=Path, help="write the report (JSON) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = run_soak(
            Path(tmp),
            seconds=args.minutes * 60,
            calibrate_s=args.calibrate_seconds,
            docs=args.docs,
            max_concurrent_requests=args.max_concurrent_requests,
        )
    print_report(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
