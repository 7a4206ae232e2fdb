"""API fuzzing: schemathesis against the service's served OpenAPI spec (loopback only, bounded).

Starts the service (tiny random model, an API key, a fake OpenAI upstream for the proxy) in this process on free
loopback ports, generates ``--examples`` positive and negative cases per operation (fixed ``--seed``), checks
every response (no 5xx; status, content type, headers and body as the spec declares; schema-invalid data
rejected) and prints cases tried / failures per operation; writes the report as JSON.

Usage:
    .venv/bin/python scripts/fuzz_api.py --examples 200 --out eval/results/reliability_cpu/fuzz.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from tests.reliability.fuzz import FUZZ_API_KEY, fuzz_target, run_fuzz
    from tests.reliability.server import tiny_scorer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="max examples per operation and mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the report (JSON) here")
    args = parser.parse_args()
    with fuzz_target(tiny_scorer()) as url:
        report = run_fuzz(url, max_examples=args.examples, seed=args.seed, api_key=FUZZ_API_KEY)
    print(f"{'operation':<28} {'mode':<9} {'cases':>6} {'failures':>8}  statuses")
    for op in report.operations:
        statuses = " ".join(f"{s}:{n}" for s, n in sorted(op.statuses.items()))
        print(f"{op.operation:<28} {op.mode:<9} {op.cases:>6} {op.failures:>8}  {statuses} {op.note}")
    print(f"total: {report.cases} cases, {report.failures} failures, {report.server_errors} server errors, "
          f"{report.seconds:.0f} s")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report.as_dict(), indent=1) + "\n")
    return 0 if report.failures == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
