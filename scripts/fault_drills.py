"""Fault drills against real service processes (loopback only, bounded): a model worker exception injected
through the ``FaultInjectingCompressor`` test hook, the proxy's upstream SIGKILLed mid-stream, SIGTERM under load.
Prints one line per drill and writes the results as JSON; exits non-zero when a drill fails.

Usage:
    .venv/bin/python scripts/fault_drills.py --out eval/results/reliability_cpu/drills.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from tests.reliability.drills import drill_sigterm_under_load, drill_upstream_killed, drill_worker_exception

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=24, help="callers in the SIGTERM drill")
    parser.add_argument("--out", type=Path, help="write the results (JSON) here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for drill in (
            lambda: drill_worker_exception(Path(tmp)),
            lambda: drill_upstream_killed(Path(tmp)),
            lambda: drill_sigterm_under_load(Path(tmp), concurrency=args.concurrency),
        ):
            result = drill()
            results.append(result)
            details = {k: v for k, v in result.items() if k not in ("drill", "passed")}
            print(f"{'PASS' if result['passed'] else 'FAIL'}  {result['drill']}: {json.dumps(details)}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
