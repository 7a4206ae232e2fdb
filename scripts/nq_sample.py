"""Print one ctxcompress request built from an NQ multi-document row of ../shared/data (used by run.sh)."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nq_multidoc" / "20docs" / "gold_at_9.jsonl.gz"
INSTRUCTION = (
    "Write a high-quality answer for the given question using only the provided search results "
    "(some of which might be irrelevant)."
)

if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        row = json.loads(handle.readline())
    documents = [f"Document [{i}](Title: {c['title']}) {c['text']}" for i, c in enumerate(row["ctxs"], 1)]
    request = {
        "method": "longllmlingua",
        "documents": documents,
        "question": row["question"],
        "instruction": INSTRUCTION,
        "budget": {"rate": 0.25},
    }
    print(json.dumps(request))
