"""The Ray engine of the corpus job (extra ``ctxcompress[ray]``; ``ctxcompress corpus --engine ray``), beside the
local one: ``read_text`` (JSONL) / ``read_parquet`` → ``map_batches`` with :class:`CompressorWorker`, a stateful
actor holding one Compressor per worker (on a GPU when ``num_gpus_per_worker > 0``) → ordered ``iter_batches``
streamed by the driver into the same output file, rejects file and report as the local engine. Ray is imported
when a job runs, never by importing this module.

Example:
    >>> from ctxcompress.corpus import CorpusJob
    >>> from ctxcompress.corpus.ray_engine import run_ray
    >>> job = CorpusJob.build(input="docs.parquet", output="out.parquet", method="llmlingua", budget={"rate": 0.5})
    >>> summary = run_ray(job, address="auto", concurrency=8, num_gpus_per_worker=1)
"""

from __future__ import annotations

import os
import pickle
import time
from typing import TYPE_CHECKING, Any

from ctxcompress.corpus.files import RowWriter, atomic_write_text, claim_output, count_rows, output_schema
from ctxcompress.corpus.job import CorpusJob
from ctxcompress.corpus.ray_worker import CompressorWorker
from ctxcompress.corpus.report import JobSummary
from ctxcompress.corpus.rows import Outcome, reject_record

if TYPE_CHECKING:
    from ctxcompress.engines.options import EngineOptions

__all__ = ["READ_TASK_CPUS", "ROWS_PER_BLOCK", "build_dataset", "run_ray"]

READ_TASK_CPUS = 0.0
ROWS_PER_BLOCK = 2000


def build_dataset(
    job: CorpusJob,
    *,
    concurrency: int = 1,
    num_gpus_per_worker: float = 0.0,
    num_cpus_per_worker: float = 1.0,
    engine_options: EngineOptions | None = None,
) -> Any:
    """The lazy dataset of pickled outcomes, one per input row, in input order.

    JSONL is read with ``read_text`` and each line parsed by the worker (as the local engine does), so a bad
    line becomes a reject instead of failing Arrow's schema inference for the whole file.
    """
    import ray.data

    path = str(job.input.resolve())
    # Reading is I/O: read tasks reserve no CPU, so that actors taking every CPU cannot block them. Enough blocks
    # (at most ROWS_PER_BLOCK rows each, at least 4 per actor) that every actor gets work even from one file.
    rows = count_rows(job.input, job.format)
    blocks = max(-(-rows // ROWS_PER_BLOCK), min(4 * concurrency, -(-rows // job.batch_size)), 1)
    read_args = {"ray_remote_args": {"num_cpus": READ_TASK_CPUS}, "override_num_blocks": blocks}
    if job.format == "jsonl":
        source = ray.data.read_text(path, drop_empty_lines=True, **read_args)
    else:
        source = ray.data.read_parquet(path, **read_args)
    return source.map_batches(
        CompressorWorker,
        fn_constructor_kwargs={
            "job_json": job.model_dump_json(),
            "device": "cuda" if num_gpus_per_worker > 0 else "cpu",
            "engine_options": engine_options,
        },
        batch_size=job.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_gpus=num_gpus_per_worker,
        num_cpus=num_cpus_per_worker,
    )


def run_ray(
    job: CorpusJob,
    *,
    address: str | None = None,
    concurrency: int = 1,
    num_gpus_per_worker: float = 0.0,
    num_cpus_per_worker: float = 1.0,
    engine_options: EngineOptions | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> JobSummary:
    """Run ``job`` as a Ray Data pipeline; same output file, rejects file and report as the local engine.

    Args:
        job: the corpus job (its input must be readable by every node: shared storage on a real cluster).
        address: an existing cluster (``auto``, ``ray://head:10001``); ``None`` starts a local instance with this
            machine's CPUs, no dashboard, workers at normal priority (``RAY_worker_niceness=0`` unless set). An
            already initialised Ray is reused as it is.
        concurrency: number of compressor actors.
        num_gpus_per_worker: GPUs per actor; ``> 0`` runs the models on CUDA.
        num_cpus_per_worker: CPUs per actor (also its torch threads).
        engine_options: how each actor's engines run (pass size, decoder, kernels, graphs).
        overwrite: replace an existing output.
        progress: show a tqdm bar (chunks/s, tokens saved) on stderr.
    """
    import ray
    from tqdm.auto import tqdm

    started = time.perf_counter()
    job.check()
    claim_output(job.output, None, overwrite=overwrite)
    started_here = not ray.is_initialized()
    if started_here:
        local = address is None
        if local:
            # Ray starts workers at niceness 15; here the workers *are* the job, so they run at normal priority
            # (otherwise any other process on the machine starves them).
            os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(
            address=address,
            num_cpus=os.cpu_count() if local else None,
            include_dashboard=False if local else None,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        dataset = build_dataset(
            job,
            concurrency=concurrency,
            num_gpus_per_worker=num_gpus_per_worker,
            num_cpus_per_worker=num_cpus_per_worker,
            engine_options=engine_options,
        )
        summary = JobSummary.start(job, "ray")
        summary.extra = {"concurrency": concurrency, "num_gpus_per_worker": num_gpus_per_worker}
        schema = output_schema(job.input) if job.format == "parquet" else None
        writer = RowWriter(job.output, job.format, schema)
        rejects: list[str] = []
        bar = tqdm(total=count_rows(job.input, job.format), unit="chunk", desc="compressing", disable=not progress)
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                outcomes: list[Outcome] = [pickle.loads(blob) for blob in batch.column("outcome").to_pylist()]
                rows = []
                for outcome in outcomes:
                    if outcome.row is None:
                        rejects.append(_reject_line(summary.rows, outcome))
                    else:
                        rows.append(outcome.row)
                        summary.origin_tokens += outcome.origin_tokens
                        summary.compressed_tokens += outcome.compressed_tokens
                    summary.rows += 1
                writer.write(rows)
                summary.written += len(rows)
                bar.update(len(outcomes))
                bar.set_postfix(tokens_saved=summary.tokens_saved, rejects=len(rejects), refresh=False)
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
        writer.commit()
    finally:
        if started_here:
            ray.shutdown()
    atomic_write_text(job.rejects_path, "".join(rejects))
    summary.rejects = len(rejects)
    summary.rows_processed = summary.rows
    summary.wall_s = time.perf_counter() - started
    summary.write(job)
    return summary


def _reject_line(row_index: int, outcome: Outcome) -> str:
    import json

    return json.dumps(reject_record(row_index, outcome), ensure_ascii=False, default=str) + "\n"
