"""Batch isolation on the real SmolLM2-135M (CPU, fp32): a ``longllmlingua`` request batched with a mate whose
``window``, ``restrictive_statement`` and ``rank_doc_tokens`` differ gets the same prompt and ranking as alone.
The mate comes first: grouping by model alone used to run the whole batch with the first member's options.
(The unit property test covers every method and position on tiny random models.)"""

from __future__ import annotations

import pytest
import torch

from ctxcompress import CompressionResult
from tests.conftest import nq_documents, nq_rows

pytestmark = pytest.mark.real_model


def request(row: dict, options: dict) -> dict:
    return {
        "method": "longllmlingua",
        "documents": [d[:300] for d in nq_documents(row)[:6]],
        "question": row["question"],
        "budget": {"rate": 0.4},
        "options": options,
    }


def essentials(result: CompressionResult) -> tuple[str, list[int] | None, list[int]]:
    return result.prompt, result.ranking, [d.index for d in result.documents]


def test_real_longllmlingua_result_does_not_depend_on_a_batch_mate(real_compressor) -> None:  # noqa: ANN001
    assert real_compressor.pool.scorer("smollm2-135m").model.dtype == torch.float32
    rows = nq_rows(2)
    subject = request(rows[0], {})  # defaults: window 200, the restrictive statement, rank_doc_tokens 1024
    mate = request(rows[1], {"window": 64, "restrictive_statement": "", "rank_doc_tokens": 16})
    alone_subject = essentials(real_compressor.compress(subject))
    alone_mate = essentials(real_compressor.compress(mate))
    # The mate's options change the subject's result (else equality below could not show isolation).
    assert essentials(real_compressor.compress(request(rows[0], mate["options"]))) != alone_subject

    together = real_compressor.compress_batch([mate, subject])
    assert essentials(together[1]) == alone_subject
    assert essentials(together[0]) == alone_mate
