"""Ray Data adapter for the corpus job (extra ``ctxcompress[ray]``): ``ctxcompress corpus --engine ray``.

The pipeline is ``read_text`` (JSONL) / ``read_parquet`` → ``map_batches`` with :class:`CompressorWorker`, a
stateful actor holding one :class:`ctxcompress.Compressor` per worker (on a GPU when ``num_gpus_per_worker > 0``)
→ ordered ``iter_batches`` streamed by the driver into the same output file, rejects file and report as the local
engine. Rows are compressed by the library's :func:`ctxcompress.corpus.compress_records`; nothing here compresses.

Example:
    >>> from ctxcompress.corpus import CorpusJob
    >>> from ctxcompress_ray import run_ray
    >>> job = CorpusJob.build(input="docs.parquet", output="out.parquet", method="llmlingua", budget={"rate": 0.5})
    >>> summary = run_ray(job, address="auto", concurrency=8, num_gpus_per_worker=1)
"""

from __future__ import annotations

from ctxcompress_ray._pipeline import build_dataset, run_ray
from ctxcompress_ray._worker import CompressorWorker

__all__ = ["CompressorWorker", "build_dataset", "run_ray"]
