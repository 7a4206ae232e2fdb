"""Budget error, answer retention and CPU time per prompt for cpc and tcra-semantic on NQ 20-doc (gold at 9).

Run: HF_HUB_OFFLINE=1 .venv/bin/python -m tests.integration_tests.measure_cpc_tcra_semantic [n_questions]
"""

from __future__ import annotations

import sys
import time

from ctxcompress import Compressor
from tests.conftest import nq_documents, nq_rows


def main(n: int = 5) -> None:
    compressor = Compressor(device="cpu")
    rows = nq_rows(n, gold=9, docs=20)
    compressor.compress({"method": "cpc", "documents": ["warm up the encoder."] * 3, "budget": {"rate": 0.5}})
    print("method         rate  mean|err|  max err   answer kept  cpu s/prompt  wall s/prompt")
    for method in ("cpc", "tcra-semantic"):
        for rate in (0.5, 0.25):
            errors, kept, cpu, wall = [], 0, 0.0, 0.0
            for row in rows:
                c0, w0 = time.process_time(), time.perf_counter()
                result = compressor.compress(
                    {
                        "method": method,
                        "documents": nq_documents(row),
                        "question": row["question"],
                        "budget": {"rate": rate},
                    }
                )
                cpu += time.process_time() - c0
                wall += time.perf_counter() - w0
                errors.append(result.compressed_tokens / result.target_tokens - 1)
                kept += any(a.lower() in result.prompt.lower() for a in row["answers"])
            mean_abs = sum(abs(e) for e in errors) / len(errors)
            worst = max(errors, key=abs)
            print(
                f"{method:<14} {rate:<5} {mean_abs:8.2%}  {worst:+8.2%}   {kept}/{len(rows)}"
                f"          {cpu / len(rows):8.2f}      {wall / len(rows):8.2f}"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
