"""One compressed prompt as every evaluated system reports it (ctxcompress methods, baselines, the anchor).

Outputs are cached one JSON line each under ``--out/cache`` so a run can be resumed and re-reported cheaply.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ctxcompress.types import CompressionResult

__all__ = ["Output", "OutputCache", "from_result"]

KeptSource = Literal["index", "markers+overlap", "none"]


@dataclass
class Output:
    """A compressed prompt with its provenance.

    ``kept`` lists ``(document index, kept text)`` in output order; ``kept_source`` says how the indices are
    known: ``index`` (reported by the system), ``markers+overlap`` (recovered from text; the anchor) or
    ``none``. ``latency_ms`` is per prompt (a batch's wall time divided by its size when batched).
    """

    id: str
    method: str
    rate: float
    prompt: str = ""
    context: str = ""
    kept: list[tuple[int, str]] = field(default_factory=list)
    kept_source: KeptSource = "index"
    ranking: list[int] | None = None
    origin_tokens: int = 0
    compressed_tokens: int = 0
    target_tokens: int = 0
    latency_ms: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def kept_text(self, index: int) -> str | None:
        """The kept text of document ``index`` (None when it was dropped)."""
        parts = [text for i, text in self.kept if i == index]
        return "\n".join(parts) if parts else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Output:
        data = json.loads(line)
        data["kept"] = [(int(i), str(t)) for i, t in data.get("kept", [])]
        return cls(**data)


def from_result(example_id: str, method: str, rate: float, result: CompressionResult, latency_ms: float) -> Output:
    """An Output from a ctxcompress result (kept document indices as the library reports them)."""
    return Output(
        id=example_id,
        method=method,
        rate=rate,
        prompt=result.prompt,
        context="\n\n".join(d.text for d in result.documents),
        kept=[(d.index, d.text) for d in result.documents],
        ranking=list(result.ranking) if result.ranking is not None else None,
        origin_tokens=result.origin_tokens,
        compressed_tokens=result.compressed_tokens,
        target_tokens=result.target_tokens,
        latency_ms=round(latency_ms, 2),
    )


class OutputCache:
    """Append-only JSONL of Outputs for one (dataset, method, rate), keyed by example id."""

    def __init__(self, root: Path, dataset: str, method: str, rate: float) -> None:
        self.path = root / "cache" / dataset / method / f"rate-{rate:g}.jsonl"

    def load(self) -> dict[str, Output]:
        if not self.path.is_file():
            return {}
        done = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out = Output.from_json(line)
                done[out.id] = out
        return done

    def append(self, outputs: list[Output]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for out in outputs:
                handle.write(out.to_json() + "\n")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
