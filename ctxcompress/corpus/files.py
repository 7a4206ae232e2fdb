"""Reading corpus rows and writing output files (JSONL or Parquet), always atomically (temp file + rename)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ctxcompress.corpus.job import ADDED_FIELDS, FileFormat

__all__ = ["RowWriter", "atomic_write_text", "claim_output", "count_rows", "iter_payloads", "output_schema"]

_PARQUET_READ_BATCH = 1024


def iter_payloads(path: Path, fmt: FileFormat) -> Iterator[str | dict[str, Any]]:
    """Stream the input's rows in order: JSONL lines (unparsed; blank lines are not rows) or Parquet dicts."""
    if fmt == "jsonl":
        with path.open("r", encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield line.rstrip("\r\n")
        return
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=_PARQUET_READ_BATCH):
        yield from batch.to_pylist()


def count_rows(path: Path, fmt: FileFormat) -> int:
    """Number of rows (non-blank lines for JSONL, metadata for Parquet)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def output_schema(input_path: Path) -> Any:
    """Parquet output schema: the input's columns (an added name already present is replaced) + the added ones."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(input_path).remove_metadata()
    for name in ADDED_FIELDS:
        if name in schema.names:
            schema = schema.remove(schema.get_field_index(name))
    added = [
        pa.field("compressed_text", pa.string()),
        pa.field("origin_tokens", pa.int64()),
        pa.field("compressed_tokens", pa.int64()),
        pa.field("compression_method", pa.string()),
        pa.field("compression_params", pa.string()),
    ]
    return pa.schema(list(schema) + added)


def _temp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old file or the complete new one."""
    temp = _temp_for(path)
    with temp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


class RowWriter:
    """Writes output rows to a temp file and renames it into place on :meth:`commit`.

    Args:
        path: the final file.
        fmt: ``jsonl`` (one compact JSON object per line) or ``parquet`` (needs ``schema``).
        schema: the Parquet output schema (:func:`output_schema`).
    """

    def __init__(self, path: Path, fmt: FileFormat, schema: Any = None) -> None:
        self.path, self.fmt, self.schema = path, fmt, schema
        self._temp = _temp_for(path)
        self._rows = 0
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self._parquet = pq.ParquetWriter(self._temp, schema)
        else:
            self._handle = self._temp.open("w", encoding="utf-8")

    def write(self, rows: list[dict[str, Any]]) -> None:
        if self.fmt == "parquet":
            import pyarrow as pa

            self._parquet.write_table(pa.Table.from_pylist(rows, schema=self.schema))
        else:
            self._handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        self._rows += len(rows)

    def append_file(self, part: Path) -> None:
        """Copy a part written by another RowWriter of the same format (and schema) to the end."""
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            self._parquet.write_table(pq.read_table(part, schema=self.schema))
        else:
            with part.open("r", encoding="utf-8") as source:
                for chunk in iter(lambda: source.read(1 << 20), ""):
                    self._handle.write(chunk)

    def commit(self) -> None:
        if self.fmt == "parquet":
            self._parquet.close()
        else:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
        os.replace(self._temp, self.path)

    def abort(self) -> None:
        if self.fmt == "parquet":
            self._parquet.close()
        else:
            self._handle.close()
        self._temp.unlink(missing_ok=True)


def claim_output(output: Path, parts_dir: Path | None, *, overwrite: bool) -> None:
    """Refuse to clobber an existing output unless ``overwrite`` or an unfinished run's shards are there to resume.

    Nothing is deleted up front: the output and report are replaced (renamed into place) only when a run
    completes, so an interrupted ``--overwrite`` run leaves the previous output and report as they were. With
    ``overwrite``, an unfinished run's shards are discarded.
    """
    import shutil

    from ctxcompress.errors import InvalidInput

    resumable = parts_dir is not None and parts_dir.exists() and not overwrite
    if output.exists() and not overwrite and not resumable:
        raise InvalidInput(f"output {str(output)!r} already exists; pass --overwrite to replace it", field="output")
    if overwrite and parts_dir is not None and parts_dir.exists():
        shutil.rmtree(parts_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
