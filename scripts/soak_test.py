"""Soak test: the service under sustained load at and above saturation (loopback only, bounded).

Measures the service's capacity (closed loop), then offers 1x capacity for half the time and 2x for the other
half. Prints throughput, p50/p99, served / rejected (429/503 with Retry-After) / lost / duplicated, RSS (and GPU
memory) over time; writes everything as JSON.

* default: a tiny random model on CPU (``tests/reliability/server.py``: llmlingua, 3 NQ documents per request,
  queue bound 32);
* ``--serve-workers N``: the real ``ctxcompress serve --workers N`` on ``--device``, with ``--random-kit DIR``
  SmolLM2-135M and MiniLM built from real configs with random weights (the lent GPU has no weights), method and
  rate as given, NQ rows from ``--data``.

Usage:
    nice -n 10 .venv/bin/python scripts/soak_test.py --minutes 10 --out eval/results/reliability_cpu/soak.json
    python3 scripts/soak_test.py --serve-workers 6 --device cuda --random-kit .carry/prof --method hybrid \
        --docs 20 --rate 0.25 --data .carry/nq/gold_at_9.jsonl.gz --callers 128 --minutes 5 --out soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "eval"))


def print_report(report: dict) -> None:
    print(f"capacity (closed loop): {report['capacity_rps']} req/s; setup: {report['setup']}")
    print(
        f"{'phase':<8} {'offered':<26} {'sent':>6} {'served':>6} {'rejected':>8} {'5xx':>4} {'no resp':>7} "
        f"{'req/s':>6} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for row in [report["calibration"], *report["phases"], report["total"]]:
        print(
            f"{row['phase']:<8} {row['offered']:<26} {row['sent']:>6} {row['served']:>6} {row['rejected']:>8} "
            f"{row['server_errors']:>4} {row['no_response']:>7} {row['throughput_rps']:>6} {row['p50_ms']!s:>8} "
            f"{row['p99_ms']!s:>8}"
        )
    for row in report["phases"]:
        if "app_p50_ms" in row:
            print(
                f"{row['phase']}: inside the app p50/p99 {row['app_p50_ms']}/{row['app_p99_ms']} ms, waiting outside "
                f"it p50/p99 {row['outside_p50_ms']}/{row['outside_p99_ms']} ms: client pool "
                f"{row['pool_wait_p50_ms']}/{row['pool_wait_p99_ms']} ms, {row['new_connections']} new connections "
                f"(connect p99/max {row['connect_p99_ms']}/{row['connect_max_ms']} ms), on the server before the app "
                f"(accept queue, socket buffer, event loop) {row['on_server_outside_p50_ms']}/"
                f"{row['on_server_outside_p99_ms']} ms; errors {row['errors']}; load generator CPU "
                f"{row['client_cpu_pct']}% of one core"
            )
    rec = report["reconcile"]
    print(
        f"accepted {rec['accepted']}, lost {rec['lost']}, duplicated {rec['duplicated']}, "
        f"mismatched {report['total']['mismatched']}, rejected without Retry-After "
        f"{report['total']['rejected_without_retry_after']}"
    )
    for name, unit in (("rss_mb", "RSS MiB"), ("gpu_memory_mib", "GPU memory MiB (all GPUs)")):
        if series := report.get(name):
            print(
                f"{unit}: start {series['start']}, peak {series['peak']}, max in first quarter "
                f"{series['first_quarter_max']}, max in last quarter {series['last_quarter_max']}"
            )
    print(f"server exit code {report['server_exit_code']}")


def served_target(args: argparse.Namespace, workdir: Path):  # -> SoakTarget
    """The real ``ctxcompress serve --workers N`` (every worker must answer /readyz before the soak starts)."""
    from tests.reliability.load import make_requests
    from tests.reliability.server import ServerProcess, cli_serve, free_port
    from tests.reliability.soak import SoakTarget

    env = dict(os.environ)
    env |= {"CTXCOMPRESS_DEFAULT_METHOD": args.method, "CTXCOMPRESS_PRELOAD_MODELS": "smollm2-135m,minilm-l6"}
    # Requests cycle through the rows: with the chunk cache on, repeats get cheap and 2x stops being an overload.
    env["CTXCOMPRESS_CHUNK_CACHE_MB"] = str(args.chunk_cache_mb)
    if args.max_concurrent_requests:  # else the service's default bound and deadline-based admission
        env["CTXCOMPRESS_MAX_CONCURRENT_REQUESTS"] = str(args.max_concurrent_requests)
    port = free_port()
    command, extra = cli_serve(
        port,
        device=args.device,
        workers=args.serve_workers,
        log_level="info",  # the access log reconciles every request
        random_kit=args.random_kit,
        random_dir=workdir / "random",
    )
    env |= extra
    server = ServerProcess(
        workdir / "soak-server.log", command=command, port=port, env=env, ready_checks=8 * args.serve_workers
    )
    return SoakTarget(
        server=server,
        requests=make_requests(n=200, docs=args.docs, rate=args.rate, method=args.method, data=Path(args.data)),
        callers=args.callers,
        warmup_s=args.warmup_seconds,
        setup={
            "server": f"ctxcompress serve --device {args.device} --workers {args.serve_workers}",
            "models": "random weights, real configs (" + args.random_kit + ")" if args.random_kit else "registry",
            "method": f"{args.method}, rate {args.rate}",
            "documents_per_request": args.docs,
            "chunk_cache_mb": args.chunk_cache_mb,
            "max_concurrent_requests_per_worker": args.max_concurrent_requests or "service default",
        },
    )


def main() -> int:
    from tests.reliability.load import NQ
    from tests.reliability.soak import run_soak, tiny_target

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--calibrate-seconds", type=float, default=20.0)
    parser.add_argument("--docs", type=int, default=3)
    parser.add_argument("--max-concurrent-requests", type=int, help="queue bound per worker (tiny server: 32)")
    parser.add_argument("--serve-workers", type=int, default=0, help="soak the real `ctxcompress serve` instead")
    parser.add_argument("--device", default="cuda", help="with --serve-workers")
    parser.add_argument("--random-kit", help="with --serve-workers: configs+tokenizers folder; random weights")
    parser.add_argument("--method", default="hybrid", help="with --serve-workers")
    parser.add_argument("--rate", type=float, default=0.25, help="with --serve-workers")
    parser.add_argument("--data", default=str(NQ), help="with --serve-workers: NQ multi-document JSONL.gz")
    parser.add_argument("--callers", type=int, default=128, help="with --serve-workers: calibration callers")
    parser.add_argument("--warmup-seconds", type=float, default=15.0, help="with --serve-workers")
    parser.add_argument("--chunk-cache-mb", type=int, default=0, help="with --serve-workers (default off: rows repeat)")
    parser.add_argument(
        "--client-processes", type=int, default=1, help="load-generator processes (one drives ~200 req/s at most)"
    )
    parser.add_argument("--out", type=Path, help="write the report (JSON) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.serve_workers:
            target = served_target(args, Path(tmp))
        else:
            bound = args.max_concurrent_requests or 32
            target = tiny_target(Path(tmp), docs=args.docs, max_concurrent_requests=bound)
        try:
            report = run_soak(
                target,
                seconds=args.minutes * 60,
                calibrate_s=args.calibrate_seconds,
                client_processes=args.client_processes,
            )
        except BaseException:
            log = target.server.log_path
            print("server log, last lines:", *log.read_text(errors="replace").splitlines()[-30:], sep="\n")
            raise
    print_report(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
