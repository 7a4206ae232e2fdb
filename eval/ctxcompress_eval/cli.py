"""``ctxcompress eval``: methods, baselines and the llmlingua anchor on real data, with tables and plots.

Example:
    ctxcompress eval --datasets nq20 --positions 0,9,19 --limit 3 --rates 0.5,0.25 \\
        --methods baselines,llmlingua,longllmlingua,anchor --out eval/results/nq20_smoke

Held-out report after tuning on rows 0-99: ``--skip 100 --limit 120`` (ids keep the row index in the file).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ctxcompress.errors import CtxCompressError

__all__ = ["configure", "run"]

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"


def _csv(kind: type) -> object:
    def parse(text: str) -> list:
        try:
            return [kind(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s: {text!r}") from exc

    return parse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("CTXCOMPRESS_DATA", DEFAULT_DATA_DIR)),
        help="folder laid out like ../shared/data (default: %(default)s or $CTXCOMPRESS_DATA)",
    )
    parser.add_argument("--datasets", type=_csv(str), default=["nq20"], help="nq20,nq10,longbench,gsm8k")
    parser.add_argument(
        "--positions",
        type=_csv(int),
        default=None,
        help="NQ gold positions (0-based; default all: 0,4,9,14,19 for nq20, 0,4,9 for nq10)",
    )
    parser.add_argument("--limit", type=int, default=None, help="N examples of each file (each position), after --skip")
    parser.add_argument(
        "--skip", type=int, default=0, help="skip the first N rows of each file (each position) before --limit"
    )
    parser.add_argument("--longbench-tasks", type=_csv(str), default=None, help="only these LongBench tasks")
    parser.add_argument(
        "--methods",
        type=_csv(str),
        default=["all"],
        help="ctxcompress methods, baselines (none,truncate,random,bm25,minilm) and anchor modes "
        "(anchor-llmlingua,anchor-longllmlingua); aliases: all, methods, baselines, anchor",
    )
    parser.add_argument("--rates", type=_csv(float), default=[0.5, 0.25], help="budget rates (kept fraction)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (results, plots, cache)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (methods, baselines, anchor)")
    parser.add_argument(
        "--batch-size", type=int, default=1, help="requests per compress_batch call (latency is reported per prompt)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    parser.add_argument("--fresh", action="store_true", help="ignore cached outputs in --out/cache")
    parser.add_argument("--anchor-venv", type=Path, default=None, help="default $ANCHOR_VENV or <repo>/.venv-anchor")
    parser.add_argument("--reader-url", default=None, help="OpenAI-compatible base URL (e.g. http://host:8000/v1)")
    parser.add_argument("--reader-model", default=None, help="model name for --reader-url")
    parser.add_argument(
        "--reader-api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the reader's API key (optional)",
    )
    parser.add_argument(
        "--paired-reference",
        default=None,
        help="system the others are compared with on the same prompts (default: anchor-longllmlingua if run)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--report-only", action="store_true", help="re-render results.md and plots from --out/results.json; run nothing"
    )


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ctxcompress_eval.datasets import load_datasets
    from ctxcompress_eval.reader import Reader
    from ctxcompress_eval.report import load_results, write_report
    from ctxcompress_eval.runner import EvalConfig, evaluate, expand_methods, log, paired_section

    if args.report_only:
        if not (args.out / "results.json").is_file():
            print(f"ctxcompress eval: no results.json in {args.out}", file=sys.stderr)
            return 2
        results = load_results(args.out)
        if results["rows"] and (args.paired_reference or not results.get("paired")):
            results["paired"] = paired_section(results["rows"], args.paired_reference)
        write_report(results, args.out, plots=not args.no_plots)
        print((args.out / "results.md").read_text(encoding="utf-8"))
        return 0
    if bool(args.reader_url) != bool(args.reader_model):
        print("ctxcompress eval: --reader-url and --reader-model go together", file=sys.stderr)
        return 2
    bad_rates = [r for r in args.rates if not 0 < r <= 1]
    if bad_rates or not args.rates:
        print(f"ctxcompress eval: rates must be in (0, 1]: {args.rates}", file=sys.stderr)
        return 2
    try:
        methods = expand_methods(args.methods)
        datasets = load_datasets(
            args.datasets,
            args.data_dir,
            positions=args.positions,
            limit=args.limit,
            skip=args.skip,
            longbench_tasks=args.longbench_tasks,
        )
        reader = None
        if args.reader_url:
            reader = Reader(args.reader_url, args.reader_model, api_key=os.environ.get(args.reader_api_key_env))
        config = EvalConfig(
            methods=methods,
            rates=args.rates,
            out=args.out,
            device=args.device,
            batch_size=args.batch_size,
            seed=args.seed,
            fresh=args.fresh,
            anchor_venv=args.anchor_venv,
            reader=reader,
            paired_reference=args.paired_reference,
            extra_meta={
                "datasets": {k: len(v) for k, v in datasets.items()},
                "positions": args.positions,
                "limit": args.limit,
                "skip": args.skip,
                "reader": {"url": args.reader_url, "model": args.reader_model} if reader else None,
            },
        )
        log(f"{sum(len(v) for v in datasets.values())} examples, methods: {', '.join(methods)}, rates: {args.rates}")
        results = evaluate(datasets, config)
    except CtxCompressError as exc:
        print(f"ctxcompress eval: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:  # e.g. --device cuda without a GPU
        print(f"ctxcompress eval: {exc}", file=sys.stderr)
        return 2
    written = write_report(results, args.out, plots=not args.no_plots)
    log("wrote " + ", ".join(str(p) for p in written))
    print((args.out / "results.md").read_text(encoding="utf-8"))
    return 0
