"""Offline corpus pre-compression: one compression request per row of a JSONL/Parquet file.

``run_local`` streams the input through ``Compressor.compress_batch`` into resumable shards; the Ray Data
engine (``ctxcompress.corpus.ray_engine.run_ray``, extra ``ctxcompress[ray]``) runs the same rows through the same
:func:`compress_records` on a cluster. CLI: ``ctxcompress corpus``.

Example:
    >>> from ctxcompress.corpus import CorpusJob, run_local
    >>> job = CorpusJob.build(input="docs.jsonl", output="out.jsonl", method="llmlingua", budget={"rate": 0.5})
    >>> summary = run_local(job)
"""

from __future__ import annotations

from ctxcompress.corpus.job import ADDED_FIELDS, CorpusJob
from ctxcompress.corpus.local import run_local
from ctxcompress.corpus.report import JobSummary
from ctxcompress.corpus.rows import Outcome, compress_records

__all__ = ["ADDED_FIELDS", "CorpusJob", "JobSummary", "Outcome", "compress_records", "run_local"]
