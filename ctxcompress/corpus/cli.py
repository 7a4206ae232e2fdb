"""``ctxcompress corpus``: pre-compress a JSONL/Parquet corpus, locally (resumable) or on a Ray cluster."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ctxcompress.commands.engine_flags import add_engine_flags, engine_overrides
from ctxcompress.errors import CtxCompressError, InvalidInput

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", "-i", required=True, help="JSONL (.jsonl/.ndjson) or Parquet (.parquet) rows")
    parser.add_argument("--output", "-o", required=True, help="output file, same format as --input")
    parser.add_argument("--method", "-m", required=True, help="a question-agnostic method, e.g. llmlingua")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--rate", type=float, help="fraction of each document's tokens to keep, in (0, 1]")
    budget.add_argument("--max-tokens", type=int, help="token budget per document (target tokenizer)")
    parser.add_argument("--options", default="{}", help="method options as a JSON object")
    parser.add_argument("--text-field", default="text", help="field holding the document (default: text)")
    parser.add_argument("--id-field", default="id", help="field holding the row id (default: id)")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per compress_batch call (default: 16)")
    parser.add_argument("--shard-size", type=int, default=1024, help="rows per resumable shard (local engine)")
    parser.add_argument("--engine", choices=["local", "ray"], default="local")
    parser.add_argument("--device", default="auto", help="local engine: auto | cpu | cuda | cuda:N")
    parser.add_argument("--overwrite", action="store_true", help="replace the output and discard earlier shards")
    parser.add_argument("--keep-parts", action="store_true", help="local engine: keep <output>.parts/ at the end")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_flags(parser)
    ray = parser.add_argument_group("ray engine (pip install 'ctxcompress[ray]')")
    ray.add_argument("--ray-address", help="existing cluster (e.g. ray://head:10001 or auto); default: start locally")
    ray.add_argument("--concurrency", type=int, default=1, help="compressor actors (default: 1)")
    ray.add_argument("--num-gpus-per-worker", type=float, default=0.0, help=">0 puts each actor on a GPU")
    ray.add_argument("--num-cpus-per-worker", type=float, default=1.0, help="CPUs per actor (default: 1)")


def _job(args: argparse.Namespace) -> Any:
    from ctxcompress.corpus.job import CorpusJob

    try:
        options = json.loads(args.options)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--options is not JSON: {exc}", field="options") from exc
    if not isinstance(options, dict):
        raise InvalidInput("--options must be a JSON object", field="options")
    budget = {"rate": args.rate} if args.rate is not None else {"max_tokens": args.max_tokens}
    return CorpusJob.build(
        input=args.input,
        output=args.output,
        method=args.method,
        budget=budget,
        options=options,
        text_field=args.text_field,
        id_field=args.id_field,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
    )


def run(args: argparse.Namespace) -> int:
    from ctxcompress import methods as _methods  # noqa: F401  (registers the methods)
    from ctxcompress.engines.options import EngineOptions

    engine_options = EngineOptions(**engine_overrides(args))

    try:
        job = _job(args)
        if args.engine == "ray":
            try:
                from ctxcompress.corpus.ray_engine import run_ray
            except ModuleNotFoundError as exc:
                raise SystemExit(f"ctxcompress corpus --engine ray: {exc} (pip install 'ctxcompress[ray]')") from exc
            summary = run_ray(
                job,
                address=args.ray_address,
                concurrency=args.concurrency,
                num_gpus_per_worker=args.num_gpus_per_worker,
                num_cpus_per_worker=args.num_cpus_per_worker,
                engine_options=engine_options,
                overwrite=args.overwrite,
                progress=not args.no_progress,
            )
        else:
            from ctxcompress.corpus.local import run_local

            summary = run_local(
                job,
                device=args.device,
                engine_options=engine_options,
                overwrite=args.overwrite,
                keep_parts=args.keep_parts,
                progress=not args.no_progress,
            )
    except CtxCompressError as exc:
        error = {"type": type(exc).__name__, "message": exc.message, "field": exc.field}
        print(json.dumps({"error": error}))
        return 2
    except KeyboardInterrupt:
        resume = "re-run without --overwrite to resume" if args.engine == "local" else "re-run to start again"
        print(
            f"\nctxcompress corpus: interrupted; {resume} (the previous output and report are untouched)",
            file=sys.stderr,
        )
        return 130
    print(summary.text(), file=sys.stderr)
    print(json.dumps(summary.as_dict(), indent=2))
    return 0
