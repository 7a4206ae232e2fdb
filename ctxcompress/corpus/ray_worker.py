"""CompressorWorker: the stateful ``map_batches`` callable; one Compressor (one model load) per actor."""

from __future__ import annotations

import pickle
from typing import Any

from ctxcompress.corpus.job import CorpusJob
from ctxcompress.corpus.rows import compress_records

__all__ = ["CompressorWorker"]


class CompressorWorker:
    """Compresses a Ray Data batch of corpus rows; returns one pickled :class:`~ctxcompress.corpus.Outcome` per row.

    Outcomes travel pickled (an ``outcome`` binary column) so that pass-through fields of any type, and rejects,
    reach the driver unchanged whatever the input format.

    Args:
        job_json: the :class:`CorpusJob` as JSON.
        device: ``cpu`` or ``cuda`` (Ray restricts each GPU actor to its own GPU).
        engine_options: how the actor's engines run (an ``EngineOptions``; None: the defaults).
    """

    def __init__(self, job_json: str, device: str = "cpu", engine_options: Any = None) -> None:
        from ctxcompress import Compressor

        self.job = CorpusJob.model_validate_json(job_json)
        self.compressor = Compressor(device=device, engine_options=engine_options)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        if self.job.format == "jsonl":
            lines = batch.column("text").to_pylist()
            payloads: list[Any] = [line.rstrip("\r\n") for line in lines if line.strip()]
        else:
            payloads = batch.to_pylist()
        outcomes = compress_records(self.compressor, self.job, payloads)
        return pa.table({"outcome": pa.array([pickle.dumps(o) for o in outcomes], type=pa.binary())})
