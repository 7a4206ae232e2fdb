"""Evaluation datasets, loaded by schema from a folder laid out like ``../shared/data``.

Every loader yields :class:`Example` objects: documents, an instruction and a question framed as the upstream
benchmark frames them, the gold answers, and (NQ) the index and position of the gold document.

* ``nq20`` / ``nq10``: NaturalQuestions multi-document QA ("Lost in the Middle", Liu et al. 2023), one file per
  gold position; documents are rendered ``Document [i](Title: {title}) {text}`` (1-based ``i``) and the
  instruction/question come from ``nq_multidoc/qa.prompt.txt``.
* ``longbench``: MiniLongBench; the task's LongBench template is split around ``{context}`` into instruction
  (before) and question (after, with ``{input}`` filled in); the context is split into documents on the task's
  natural markers (``Passage 1:``, ``Paragraph 1:``, ``段落1：``, ``文章1``, ``Passage:``), else on blank lines,
  else on lines, and small pieces are merged into chunks of at least ``MIN_CHUNK_CHARS``.
* ``gsm8k``: the 8-shot chain-of-thought prompt LLMLingua compresses, split into its demonstrations (documents),
  with a GSM8K test question as the question.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctxcompress.errors import InvalidInput

__all__ = [
    "DATASETS",
    "Example",
    "load_datasets",
    "load_gsm8k",
    "load_longbench",
    "load_nq",
    "render_nq_document",
    "split_longbench_context",
]

NQ_POSITIONS = {20: (0, 4, 9, 14, 19), 10: (0, 4, 9)}
MIN_CHUNK_CHARS = 400
MAX_CHUNKS = 64
_LONGBENCH_MARKERS = (
    re.compile(r"^Passage \d+:", re.M),
    re.compile(r"^Paragraph \d+:", re.M),
    re.compile(r"^段落\d+：", re.M),
    re.compile(r"^文章\d+", re.M),
    re.compile(r"^Passage:\n", re.M),
)
_GSM8K_QUESTION = "Question: {question}\nLet's think step by step"


@dataclass
class Example:
    """One evaluation prompt.

    ``gold_index`` is the 0-based index of the answer-bearing document (NQ only); ``position`` the gold
    position the example was drawn for (NQ only); ``answers`` are the strings whose presence counts as kept.
    """

    id: str
    dataset: str
    documents: list[str]
    question: str | None
    instruction: str | None
    answers: list[str]
    gold_index: int | None = None
    position: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def request(self, method: str, rate: float) -> dict[str, Any]:
        """The ctxcompress request for this example at ``rate``."""
        return {
            "method": method,
            "documents": self.documents,
            "question": self.question,
            "instruction": self.instruction,
            "budget": {"rate": rate},
        }


def _window(rows: Iterable[tuple[int, Any]], skip: int, limit: int | None) -> Iterator[tuple[int, Any]]:
    """``(index, row)`` pairs after the first ``skip``, at most ``limit`` of them (indices unchanged)."""
    for n, (index, row) in enumerate(rows):
        if n < skip:
            continue
        if limit is not None and n >= skip + limit:
            return
        yield index, row


def _read_jsonl_gz(path: Path, limit: int | None = None, skip: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row index, row)`` of the non-blank lines after the first ``skip`` rows, at most ``limit`` rows."""
    if not path.is_file():
        raise InvalidInput(
            f"dataset file not found: {path} (is --data-dir a copy of ../shared/data?)", field="data_dir"
        )
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = (json.loads(line) for line in handle if line.strip())
        yield from _window(enumerate(rows), skip, limit)


def render_nq_document(index: int, ctx: dict[str, Any]) -> str:
    """The upstream rendering of one passage; ``index`` is 1-based."""
    return f"Document [{index}](Title: {ctx['title']}) {ctx['text']}"


def _nq_prompt_parts(data_dir: Path) -> tuple[str, str]:
    path = data_dir / "nq_multidoc" / "qa.prompt.txt"
    if not path.is_file():
        raise InvalidInput(f"NQ prompt template not found: {path}", field="data_dir")
    template = path.read_text(encoding="utf-8")
    if "{search_results}" not in template or "{question}" not in template:
        raise InvalidInput(f"{path} lacks {{search_results}} or {{question}}", field="data_dir")
    before, after = template.split("{search_results}", 1)
    return before.strip(), after.strip()


def load_nq(
    data_dir: Path,
    *,
    docs: int = 20,
    positions: list[int] | None = None,
    limit: int | None = None,
    skip: int = 0,
) -> list[Example]:
    """NQ multi-document QA with ``docs`` passages: ``limit`` rows of each gold-position file after ``skip``.

    Ids hold the row index in the file (``nq20-g9-105``), whatever ``skip`` and ``limit`` select.
    """
    if docs not in NQ_POSITIONS:
        raise InvalidInput(f"NQ has 10 or 20 documents, not {docs}", field="datasets")
    available = NQ_POSITIONS[docs]
    wanted = list(available) if positions is None else [p for p in positions if p in available]
    if not wanted:
        raise InvalidInput(
            f"none of positions {positions} exists for nq{docs} (available: {list(available)})", field="positions"
        )
    instruction, question_template = _nq_prompt_parts(data_dir)
    examples = []
    for position in wanted:
        path = data_dir / "nq_multidoc" / f"{docs}docs" / f"gold_at_{position}.jsonl.gz"
        for row_index, row in _read_jsonl_gz(path, limit, skip):
            ctxs = row["ctxs"]
            gold = next((i for i, c in enumerate(ctxs) if c.get("isgold")), None)
            examples.append(
                Example(
                    id=f"nq{docs}-g{position}-{row_index}",
                    dataset=f"nq{docs}",
                    documents=[render_nq_document(i, c) for i, c in enumerate(ctxs, 1)],
                    question=question_template.format(question=row["question"]),
                    instruction=instruction,
                    answers=list(row["answers"]),
                    gold_index=gold,
                    position=position,
                    meta={"question": row["question"]},
                )
            )
    return examples


def _split_on(pattern: re.Pattern[str], text: str) -> list[str]:
    starts = [m.start() for m in pattern.finditer(text)]
    if len(starts) < 2:
        return []
    bounds = ([0] if starts[0] > 0 else []) + starts + [len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if text[a:b].strip()]


def _merge_small(pieces: list[str], min_chars: int, sep: str) -> list[str]:
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) < min_chars:
            chunks[-1] = chunks[-1] + sep + piece
        else:
            chunks.append(piece)
    return chunks


def split_longbench_context(context: str) -> list[str]:
    """Split a LongBench context into documents (natural markers, else paragraphs, else lines, else sentences).

    Marker-delimited passages are kept whole; paragraphs/lines/sentences are merged into chunks of at least
    ``MIN_CHUNK_CHARS`` (more for very long contexts, so there are at most about ``MAX_CHUNKS`` of them).
    """
    text = context.replace("\r\n", "\n").strip()
    if not text:
        return []
    for pattern in _LONGBENCH_MARKERS:
        pieces = _split_on(pattern, text)
        if pieces:
            return [p.strip() for p in pieces]
    min_chars = max(MIN_CHUNK_CHARS, len(text) // MAX_CHUNKS)
    for splitter, sep in ((re.compile(r"\n\s*\n"), "\n\n"), (re.compile(r"\n"), "\n")):
        pieces = [p for p in splitter.split(text) if p.strip()]
        if len(pieces) >= 2:
            return [c.strip() for c in _merge_small(pieces, min_chars, sep)]
    from ctxcompress.text import split_sentences

    return [c.strip() for c in _merge_small(split_sentences(text), min_chars, "")]


def _longbench_answers(raw: Any) -> list[str]:
    if isinstance(raw, dict):  # classification tasks (lsht, trec): {"answers": [...], "all_classes": [...]}
        raw = raw.get("answers", [])
    return [str(a) for a in raw or []]


def load_longbench(
    data_dir: Path, *, limit: int | None = None, tasks: list[str] | None = None, skip: int = 0
) -> list[Example]:
    """MiniLongBench rows (optionally only ``tasks``): ``limit`` rows after the task filter and ``skip`` rows."""
    path = data_dir / "longbench" / "minilongbench.jsonl.gz"
    prompts_path = data_dir / "longbench" / "longbench_dataset2prompt.json"
    templates: dict[str, str] = json.loads(prompts_path.read_text(encoding="utf-8")) if prompts_path.is_file() else {}
    examples: list[Example] = []
    rows = ((i, row) for i, row in _read_jsonl_gz(path) if not tasks or row["task"] in tasks)
    for _, row in _window(rows, skip, limit):
        template = templates.get(row.get("template_of") or row["task"], "{context}\n\n{input}")
        before, _, after = template.partition("{context}")
        question = after.replace("{input}", row.get("input") or "").strip() or None
        examples.append(
            Example(
                id=f"longbench-{row['task']}-{row['idx']}",
                dataset="longbench",
                documents=split_longbench_context(row["context"]),
                question=question,
                instruction=before.strip() or None,
                answers=_longbench_answers(row.get("answers")),
                meta={"task": row["task"]},
            )
        )
    return examples


def split_demonstrations(prompt: str) -> list[str]:
    """The demonstrations of a few-shot CoT prompt: blocks that start with ``Question:``."""
    return [p.strip() for p in _split_on(re.compile(r"^Question:", re.M), prompt.strip())] or [prompt.strip()]


def load_gsm8k(data_dir: Path, *, limit: int | None = None, skip: int = 0) -> list[Example]:
    """The 8-shot CoT prompt (documents = demonstrations) with ``limit`` test questions after the first ``skip``.

    ``answers`` holds the demonstrations' final answers (``The answer is N``): retention then measures how many
    reasoning chains keep their conclusion. (The test question's own answer is not in the context.)
    """
    prompt_path = data_dir / "gsm8k" / "gsm8k_cot_prompt_hardest.txt"
    if not prompt_path.is_file():
        raise InvalidInput(f"GSM8K prompt not found: {prompt_path}", field="data_dir")
    demos = split_demonstrations(prompt_path.read_text(encoding="utf-8"))
    finals = [m.group(0) for d in demos for m in [re.search(r"The answer is .+", d)] if m]
    examples = []
    for n, row in _read_jsonl_gz(data_dir / "gsm8k" / "gsm8k_test.jsonl.gz", limit, skip):
        examples.append(
            Example(
                id=f"gsm8k-{n}",
                dataset="gsm8k",
                documents=list(demos),
                question=_GSM8K_QUESTION.format(question=row["question"]),
                instruction=None,
                answers=[],
                meta={"demo_answers": finals, "answer": row["answer"].split("####")[-1].strip()},
            )
        )
    return examples


Loader = Callable[..., list[Example]]


def _nq(docs: int) -> Loader:
    def load(
        data_dir: Path, *, positions: list[int] | None, limit: int | None, skip: int = 0, **_: Any
    ) -> list[Example]:
        return load_nq(data_dir, docs=docs, positions=positions, limit=limit, skip=skip)

    return load


DATASETS: dict[str, Loader] = {
    "nq20": _nq(20),
    "nq10": _nq(10),
    "longbench": lambda data_dir, *, limit, skip=0, longbench_tasks=None, **_: load_longbench(
        data_dir, limit=limit, tasks=longbench_tasks, skip=skip
    ),
    "gsm8k": lambda data_dir, *, limit, skip=0, **_: load_gsm8k(data_dir, limit=limit, skip=skip),
}


def load_datasets(
    names: list[str],
    data_dir: Path,
    *,
    positions: list[int] | None = None,
    limit: int | None = None,
    skip: int = 0,
    longbench_tasks: list[str] | None = None,
) -> dict[str, list[Example]]:
    """Examples per dataset name (``skip`` rows, then ``limit``); unknown names raise InvalidInput."""
    if skip < 0 or (limit is not None and limit < 0):
        raise InvalidInput(f"skip and limit must be >= 0 (skip={skip}, limit={limit})", field="skip")
    out = {}
    for name in names:
        if name not in DATASETS:
            raise InvalidInput(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}", field="datasets")
        out[name] = DATASETS[name](
            data_dir, positions=positions, limit=limit, skip=skip, longbench_tasks=longbench_tasks
        )
    return out
