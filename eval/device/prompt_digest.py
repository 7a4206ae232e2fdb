"""The compressed prompts of one batch, as digests: run it on two sides of a change and compare.

    python3 eval/device/prompt_digest.py --data .carry/nq/gold_at_0.jsonl.gz --limit 64 --out /tmp/a.json
    python3 eval/device/prompt_digest.py --compare /tmp/a.json /tmp/b.json
Runs ``--method`` (`hybrid`) at rate 0.25 on ``--limit`` NQ requests in one `compress_batch` (the models of
$CTXCOMPRESS_MODELS, e.g. random_kit_env.sh's; chunk cache off), on CUDA when present; ``--alone``: one
`compress` per request instead (batched against alone: does a request's result depend on its batch-mates?).
``--prompts-out`` also writes the prompts themselves.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="*", default=[])
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", type=Path, nargs=2)
    parser.add_argument("--method", default="hybrid")
    parser.add_argument("--alone", action="store_true", help="one compress call per request")
    parser.add_argument("--prompts-out", type=Path)
    args = parser.parse_args()
    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        same = sum(x == y for x, y in zip(a, b, strict=True))
        print(f"identical prompts: {same} of {len(a)}")
        return
    import torch
    from ctxcompress_eval.bench import _request, _rows

    from ctxcompress import Compressor
    from ctxcompress.engines.options import EngineOptions

    requests = [_request(row, args.method, 0.25) for row in _rows(args.data, args.limit)]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    compressor = Compressor(device=device, engine_options=EngineOptions(chunk_cache_mb=0))
    if args.alone:
        results = [compressor.compress(request) for request in requests]
    else:
        results = compressor.compress_batch(requests)
    args.out.write_text(json.dumps([hashlib.sha1(r.prompt.encode()).hexdigest() for r in results]))
    if args.prompts_out:
        args.prompts_out.write_text(json.dumps([r.prompt for r in results]))


if __name__ == "__main__":
    main()
