"""CorpusJob: the typed description of one corpus pre-compression run, shared by every engine.

A corpus is a JSONL or Parquet file of rows; each row holds one document (``text_field``) and an id
(``id_field``). Each row becomes one compression request with that single document and no question, so only
question-agnostic methods qualify (a method class declaring ``needs_question`` is refused).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ctxcompress.errors import InvalidInput
from ctxcompress.methods.base import method_class
from ctxcompress.prompting import prepare
from ctxcompress.types import Budget, CompressionRequest

__all__ = ["ADDED_FIELDS", "CorpusJob", "FileFormat", "file_format"]

FileFormat = Literal["jsonl", "parquet"]

# Columns every output row gains, in this order.
ADDED_FIELDS = ("compressed_text", "origin_tokens", "compressed_tokens", "compression_method", "compression_params")

_SUFFIXES: dict[str, FileFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def file_format(path: Path, *, field: str) -> FileFormat:
    """The format named by ``path``'s suffix (``.jsonl``/``.ndjson`` or ``.parquet``/``.pq``)."""
    try:
        return _SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise InvalidInput(
            f"{field} {str(path)!r}: unsupported suffix {path.suffix!r}; use one of {', '.join(_SUFFIXES)}",
            field=field,
        ) from None


class CorpusJob(BaseModel):
    """One corpus run: where to read and write, which method and budget, how to batch.

    Args:
        input: JSONL or Parquet file of rows.
        output: file to produce, same format as ``input``; shards and the manifest live in ``<output>.parts/``.
        method: any registered question-agnostic method name.
        budget: ``{"rate": r}`` or ``{"max_tokens": n}`` per document, in the target tokenizer.
        options: the method's options (validated against its options model).
        text_field, id_field: names of the document and id fields; every other field is passed through.
        batch_size: rows per ``Compressor.compress_batch`` call.
        shard_size: rows per output shard (the unit of resumption); a multiple of ``batch_size`` is best.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Path
    output: Path
    method: str
    budget: Budget
    options: dict[str, Any] = Field(default_factory=dict)
    text_field: str = "text"
    id_field: str = "id"
    batch_size: int = Field(default=16, ge=1, le=100_000)
    shard_size: int = Field(default=1024, ge=1, le=10_000_000)

    @model_validator(mode="after")
    def _formats_match(self) -> CorpusJob:
        if file_format(self.input, field="input") != file_format(self.output, field="output"):
            raise ValueError("output must have the same format as input (both .jsonl or both .parquet)")
        if self.text_field == self.id_field:
            raise ValueError("text_field and id_field must differ")
        return self

    @classmethod
    def build(cls, **fields: Any) -> CorpusJob:
        """Construct and validate (method exists, needs no question, options and budget valid)."""
        try:
            job = cls.model_validate(fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "job"
            raise InvalidInput(f"invalid corpus job {where!r}: {first['msg']}", field=where) from exc
        job.check()
        return job

    @property
    def format(self) -> FileFormat:
        return file_format(self.input, field="input")

    @property
    def parts_dir(self) -> Path:
        return self.output.with_name(self.output.name + ".parts")

    @property
    def rejects_path(self) -> Path:
        return self.output.with_name(self.output.stem + ".rejects.jsonl")

    @property
    def report_path(self) -> Path:
        return self.output.with_name(self.output.stem + ".report.json")

    def check(self) -> None:
        """Refuse a missing input, unknown methods, methods that need a question, invalid options (before any work)."""
        if not self.input.is_file():
            raise InvalidInput(f"input {str(self.input)!r} is not a file", field="input")
        cls = method_class(self.method)
        if cls.needs_question:
            raise InvalidInput(
                f"method {self.method!r} needs a question, but a corpus row is compressed without one; "
                "use a question-agnostic method (e.g. llmlingua, llmlingua2, cpc, tcra-summary, tcra-semantic)",
                field="method",
            )
        probe = CompressionRequest(method=self.method, documents=["probe"], budget=self.budget, options=self.options)
        prepare(probe, cls.options_model)

    def request(self, text: str) -> dict[str, Any]:
        """The compression request for one row's document."""
        return {
            "method": self.method,
            "documents": [text],
            "budget": self.budget.model_dump(exclude_none=True),
            "options": self.options,
        }

    def params_json(self) -> str:
        """The ``compression_params`` value written on every row: budget and options, compact JSON."""
        params = {"budget": self.budget.model_dump(exclude_none=True), "options": self.options}
        return json.dumps(params, sort_keys=True, separators=(",", ":"))

    def fingerprint(self) -> str:
        """Identifies the work a set of shards belongs to (input identity, method, budget, fields, sharding)."""
        stat = self.input.stat()
        key = self.model_dump(mode="json", exclude={"output", "batch_size"})
        key["input"] = [str(self.input.resolve()), stat.st_size, stat.st_mtime_ns]
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
