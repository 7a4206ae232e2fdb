"""The end-of-job summary: printed and written as JSON next to the output."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ctxcompress.corpus.files import atomic_write_text
from ctxcompress.corpus.job import CorpusJob

__all__ = ["JobSummary"]


@dataclass
class JobSummary:
    """Totals of a corpus run. Token counts are in the target tokenizer over the rows written.

    ``rows_processed`` and ``rows_per_s`` cover this run only (shards completed by an earlier run are counted
    in ``rows`` but not re-processed).
    """

    engine: str
    method: str
    params: dict[str, Any]
    output: str
    rejects_file: str
    rows: int = 0
    written: int = 0
    rejects: int = 0
    origin_tokens: int = 0
    compressed_tokens: int = 0
    rows_processed: int = 0
    shards: int = 0
    shards_resumed: int = 0
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, job: CorpusJob, engine: str) -> JobSummary:
        return cls(
            engine=engine,
            method=job.method,
            params=json.loads(job.params_json()),
            output=str(job.output),
            rejects_file=str(job.rejects_path),
        )

    @property
    def tokens_saved(self) -> int:
        return self.origin_tokens - self.compressed_tokens

    @property
    def rows_per_s(self) -> float:
        return self.rows_processed / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data["tokens_saved"] = self.tokens_saved
        data["ratio"] = round(self.origin_tokens / self.compressed_tokens, 4) if self.compressed_tokens else None
        data["wall_s"] = round(self.wall_s, 3)
        data["rows_per_s"] = round(self.rows_per_s, 3)
        return {**data, **extra}

    def write(self, job: CorpusJob) -> None:
        atomic_write_text(job.report_path, json.dumps(self.as_dict(), indent=2) + "\n")

    def text(self) -> str:
        """A short human-readable summary."""
        return (
            f"{self.engine}: {self.rows} rows ({self.rows_processed} processed now, {self.shards_resumed} of "
            f"{self.shards} shards resumed), {self.written} written, {self.rejects} rejected; tokens "
            f"{self.origin_tokens} -> {self.compressed_tokens} (saved {self.tokens_saved}); "
            f"{self.wall_s:.1f} s, {self.rows_per_s:.2f} rows/s"
        )
