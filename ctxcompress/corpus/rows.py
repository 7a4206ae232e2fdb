"""Row-level logic shared by every engine: parse and check a row, compress a batch of rows, build output rows.

Both the local engine and the Ray actors call :func:`compress_records`, so the same row yields the same output
(or the same reject reason) whichever engine runs it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ctxcompress.corpus.job import CorpusJob
from ctxcompress.errors import CtxCompressError
from ctxcompress.types import CompressionResult

__all__ = ["BatchCompressor", "Outcome", "compress_records", "parse_record", "reject_record"]


class BatchCompressor(Protocol):
    """What the job needs from a compressor (a :class:`ctxcompress.Compressor`)."""

    def compress_batch(
        self, requests: Sequence[dict[str, Any]], *, return_exceptions: bool = ...
    ) -> list[CompressionResult | CtxCompressError]: ...


@dataclass
class Outcome:
    """One input row's fate: an output ``row`` or a ``reason`` it was rejected (``id`` when readable)."""

    row: dict[str, Any] | None = None
    id: Any = None
    reason: str | None = None
    origin_tokens: int = 0
    compressed_tokens: int = 0


def parse_record(payload: str | dict[str, Any]) -> dict[str, Any] | str:
    """A record as a dict, or the reason it is not one (a JSONL line that is not a JSON object)."""
    if isinstance(payload, dict):
        return payload
    try:
        value = json.loads(payload)
    except json.JSONDecodeError as exc:
        return f"line is not valid JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(value, dict):
        return f"line is JSON {type(value).__name__}, not an object"
    return value


def _check(record: dict[str, Any], job: CorpusJob) -> str | None:
    if job.id_field not in record or record[job.id_field] is None:
        return f"missing id field {job.id_field!r}"
    if job.text_field not in record or record[job.text_field] is None:
        return f"missing text field {job.text_field!r}"
    text = record[job.text_field]
    if not isinstance(text, str):
        return f"text field {job.text_field!r} is {type(text).__name__}, not a string"
    if not text.strip():
        return f"text field {job.text_field!r} is empty"
    return None


def compress_records(
    compressor: BatchCompressor, job: CorpusJob, payloads: Sequence[str | dict[str, Any]]
) -> list[Outcome]:
    """Compress a batch of rows (JSONL lines or dicts) in one ``compress_batch`` call; one outcome per row.

    Rows that cannot be compressed (unparseable, missing/non-text/empty text, missing id, or a compression
    error for that row) become rejects with the reason; the rest of the batch is unaffected.
    """
    outcomes: list[Outcome] = []
    pending: list[tuple[int, dict[str, Any]]] = []
    for payload in payloads:
        record = parse_record(payload)
        if isinstance(record, str):
            outcomes.append(Outcome(reason=record))
            continue
        reason = _check(record, job)
        outcomes.append(Outcome(id=record.get(job.id_field), reason=reason))
        if reason is None:
            pending.append((len(outcomes) - 1, record))
    if not pending:
        return outcomes
    results = compressor.compress_batch(
        [job.request(record[job.text_field]) for _, record in pending], return_exceptions=True
    )
    params = job.params_json()
    for (slot, record), result in zip(pending, results, strict=True):
        outcome = outcomes[slot]
        if isinstance(result, CtxCompressError):
            outcome.reason = f"{type(result).__name__}: {result.message}"
            continue
        outcome.origin_tokens, outcome.compressed_tokens = result.origin_tokens, result.compressed_tokens
        outcome.row = {
            **record,
            "compressed_text": result.prompt,
            "origin_tokens": result.origin_tokens,
            "compressed_tokens": result.compressed_tokens,
            "compression_method": result.method,
            "compression_params": params,
        }
    return outcomes


def reject_record(row_index: int, outcome: Outcome) -> dict[str, Any]:
    """One entry of the rejects file: the row's 0-based index in the input, its id (when readable), the reason."""
    return {"row": row_index, "id": outcome.id, "reason": outcome.reason}
