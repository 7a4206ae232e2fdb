"""Write every method's output on a few NQ rows to one JSON file, to check that a refactor keeps outputs identical.

    python scripts/output_snapshot.py before.json      # on the old commit
    python scripts/output_snapshot.py after.json       # on the new one
    cmp before.json after.json

Runs on CPU with the embedded models on rows of ../shared/data's NQ 20-document set, cut to 10 documents each
(llmlingua2 needs an operator-configured classifier, so it is left out).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from ctxcompress import Compressor

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nq_multidoc" / "20docs" / "gold_at_9.jsonl.gz"
METHODS = ["hybrid", "cpc", "attention", "longllmlingua", "llmlingua", "tcra-semantic", "tcra-summary"]
ROWS = 2
DOCUMENTS = 10


def requests() -> list[dict]:
    out = []
    with gzip.open(DATA, "rt", encoding="utf-8") as handle:
        for _, line in zip(range(ROWS), handle, strict=False):
            row = json.loads(line)
            documents = [f"Document [{i}](Title: {c['title']}) {c['text']}" for i, c in enumerate(row["ctxs"], 1)]
            out.append({"documents": documents[:DOCUMENTS], "question": row["question"], "budget": {"rate": 0.25}})
    return out


def main(path: str) -> None:
    compressor = Compressor(device="cpu")
    snapshot = {}
    for method in METHODS:
        results = compressor.compress_batch([{**request, "method": method} for request in requests()])
        snapshot[method] = [{"prompt": r.prompt, "ranking": r.ranking, "tokens": r.compressed_tokens} for r in results]
        print(method, [r.compressed_tokens for r in results], flush=True)
    Path(path).write_text(json.dumps(snapshot, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1])
