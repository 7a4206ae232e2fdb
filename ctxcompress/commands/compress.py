"""``ctxcompress compress``: read one request (or a JSON list of requests) and print the result JSON."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ctxcompress.commands.engine_flags import add_engine_flags, engine_overrides
from ctxcompress.errors import CtxCompressError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", "-i", help="request JSON file (default: stdin); a list compresses a batch")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--prompt-only", action="store_true", help="print only the compressed prompt")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    add_engine_flags(parser)


def run(args: argparse.Namespace) -> int:
    from ctxcompress import Compressor, EngineOptions

    try:
        raw = open(args.input, encoding="utf-8").read() if args.input else sys.stdin.read()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"ctxcompress compress: cannot read {args.input}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError as exc:
        print(json.dumps({"error": {"type": "InvalidInput", "message": f"request is not JSON: {exc}"}}))
        return 2
    compressor = Compressor(device=args.device, engine_options=EngineOptions(**engine_overrides(args)))
    requests = payload if isinstance(payload, list) else [payload]
    say = (
        (lambda line: None) if args.quiet else (lambda line: print(f"ctxcompress: {line}", file=sys.stderr, flush=True))
    )
    say(f"compressing {len(requests)} request(s) on {compressor.pool.device} (the first run loads the models)")
    started = time.perf_counter()
    try:
        if isinstance(payload, list):
            results = compressor.compress_batch(payload)
            out = [r.model_dump() for r in results]  # type: ignore[union-attr]
        else:
            result = compressor.compress(payload)
            results = [result]
            out = result.prompt if args.prompt_only else result.model_dump()
    except CtxCompressError as exc:
        error = {"type": type(exc).__name__, "message": exc.message, "field": exc.field}
        print(json.dumps({"error": error}), file=sys.stdout)
        return 2
    origin = sum(r.origin_tokens for r in results)  # type: ignore[union-attr]
    compressed = sum(r.compressed_tokens for r in results)  # type: ignore[union-attr]
    say(f"{origin:,} -> {compressed:,} tokens in {time.perf_counter() - started:.1f} s")
    print(out if isinstance(out, str) else json.dumps(out, ensure_ascii=False, indent=2))
    return 0
