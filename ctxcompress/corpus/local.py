"""The local engine: stream the input, compress it batch by batch, write resumable shards, assemble the output.

Shard ``k`` holds input rows ``[k * shard_size, (k + 1) * shard_size)``. Each shard is written as a data file
(``part-0000k.jsonl``/``.parquet``) and then a metadata file (``part-0000k.meta.json``: row range, token totals,
rejects), each by temp file + rename; a shard counts as complete only once its metadata exists. A re-run with the
same job (checked through ``manifest.json``'s fingerprint) skips complete shards, so a killed run resumes with
exactly one output row per input row. The final file is assembled from the shards in order.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ctxcompress.corpus.files import (
    RowWriter,
    atomic_write_text,
    claim_output,
    count_rows,
    iter_payloads,
    output_schema,
)
from ctxcompress.corpus.job import CorpusJob
from ctxcompress.corpus.report import JobSummary
from ctxcompress.corpus.rows import BatchCompressor, compress_records, reject_record
from ctxcompress.errors import InvalidInput

if TYPE_CHECKING:
    from ctxcompress.engines.options import EngineOptions

__all__ = ["run_local"]

T = TypeVar("T")


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _part(parts: Path, shard: int, suffix: str) -> Path:
    return parts / f"part-{shard:05d}{suffix}"


def _open_parts(job: CorpusJob, total_rows: int) -> dict[int, dict[str, Any]]:
    """Create or check ``manifest.json``; return the metadata of shards already complete."""
    parts = job.parts_dir
    manifest_path = parts / "manifest.json"
    fingerprint = job.fingerprint()
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("fingerprint") != fingerprint:
            raise InvalidInput(
                f"{str(parts)!r} holds shards of a different job (input file, method, budget, options, fields or "
                "shard size changed); pass --overwrite to start over",
                field="output",
            )
    else:
        parts.mkdir(parents=True, exist_ok=True)
        manifest = {
            "fingerprint": fingerprint,
            "job": job.model_dump(mode="json"),
            "rows": total_rows,
            "shards": -(-total_rows // job.shard_size),
            "layout": "part-NNNNN.<ext> (rows [N*shard_size, (N+1)*shard_size)), then part-NNNNN.meta.json",
        }
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    done = {}
    for meta_path in sorted(parts.glob("part-*.meta.json")):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if _part(parts, meta["shard"], f".{job.format}").exists():
            done[meta["shard"]] = meta
    return done


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="chunk", desc="compressing", disable=not enabled, smoothing=0.1)


def run_local(
    job: CorpusJob,
    *,
    compressor: BatchCompressor | None = None,
    device: str = "auto",
    engine_options: EngineOptions | None = None,
    overwrite: bool = False,
    keep_parts: bool = False,
    progress: bool = True,
) -> JobSummary:
    """Run ``job`` in this process and return its summary (also written to ``job.report_path``).

    Args:
        job: the corpus job.
        compressor: a ready compressor (default: ``Compressor(device=device)``).
        device: device for the default compressor.
        engine_options: how the default compressor's engines run (pass size, decoder, kernels, graphs).
        overwrite: replace an existing output and discard shards of an earlier run.
        keep_parts: keep ``<output>.parts/`` after the output is assembled.
        progress: show a tqdm bar (chunks/s, tokens saved) on stderr.
    """
    started = time.perf_counter()
    job.check()
    claim_output(job.output, job.parts_dir, overwrite=overwrite)
    total = count_rows(job.input, job.format)
    done = _open_parts(job, total)
    schema = output_schema(job.input) if job.format == "parquet" else None
    summary = JobSummary.start(job, "local")
    for meta in done.values():
        summary.origin_tokens += meta["origin_tokens"]
        summary.compressed_tokens += meta["compressed_tokens"]
    if compressor is None:
        from ctxcompress.compressor import Compressor

        compressor = Compressor(device=device, engine_options=engine_options)

    resumed_rows = sum(meta["end"] - meta["start"] for meta in done.values())
    bar = _progress(total, resumed_rows, progress)
    shards = 0
    try:
        for shard, payloads in enumerate(_chunks(iter_payloads(job.input, job.format), job.shard_size)):
            shards += 1
            if shard in done:
                continue
            _run_shard(job, compressor, shard, payloads, schema, summary, bar)
    finally:
        bar.close()

    summary.shards, summary.shards_resumed = shards, len(done)
    _assemble(job, shards, schema, summary)
    summary.wall_s = time.perf_counter() - started
    summary.write(job)
    if not keep_parts:
        shutil.rmtree(job.parts_dir, ignore_errors=True)
    return summary


def _run_shard(
    job: CorpusJob,
    compressor: BatchCompressor,
    shard: int,
    payloads: list[str | dict[str, Any]],
    schema: Any,
    summary: JobSummary,
    bar: Any,
) -> None:
    start = shard * job.shard_size
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    origin = compressed = 0
    for offset in range(0, len(payloads), job.batch_size):
        batch = payloads[offset : offset + job.batch_size]
        for i, outcome in enumerate(compress_records(compressor, job, batch)):
            if outcome.row is None:
                rejects.append(reject_record(start + offset + i, outcome))
                continue
            rows.append(outcome.row)
            origin += outcome.origin_tokens
            compressed += outcome.compressed_tokens
        summary.rows_processed += len(batch)
        bar.update(len(batch))
        bar.set_postfix(tokens_saved=summary.tokens_saved + origin - compressed, rejects=len(rejects), refresh=False)
    writer = RowWriter(_part(job.parts_dir, shard, f".{job.format}"), job.format, schema)
    writer.write(rows)
    writer.commit()
    meta = {
        "shard": shard,
        "start": start,
        "end": start + len(payloads),
        "written": len(rows),
        "origin_tokens": origin,
        "compressed_tokens": compressed,
        "rejects": rejects,
    }
    atomic_write_text(_part(job.parts_dir, shard, ".meta.json"), json.dumps(meta, ensure_ascii=False, default=str))
    summary.origin_tokens += origin
    summary.compressed_tokens += compressed


def _assemble(job: CorpusJob, shards: int, schema: Any, summary: JobSummary) -> None:
    """Concatenate the shards in row order into the output; gather rejects; fill the row counts."""
    writer = RowWriter(job.output, job.format, schema)
    reject_lines: list[str] = []
    try:
        for shard in range(shards):
            meta = json.loads(_part(job.parts_dir, shard, ".meta.json").read_text(encoding="utf-8"))
            writer.append_file(_part(job.parts_dir, shard, f".{job.format}"))
            summary.rows += meta["end"] - meta["start"]
            summary.written += meta["written"]
            summary.rejects += len(meta["rejects"])
            reject_lines.extend(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in meta["rejects"])
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    atomic_write_text(job.rejects_path, "".join(reject_lines))
