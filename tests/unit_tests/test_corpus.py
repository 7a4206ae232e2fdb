"""Corpus job mechanics with the tiny random scorer (local engine, in-process): output rows, rejects, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ctxcompress.cli import main as cli_main
from ctxcompress.corpus import ADDED_FIELDS, CorpusJob, run_local
from ctxcompress.errors import InvalidInput
from tests.conftest import nq_rows


def nq_passages(n: int) -> list[dict]:
    """``n`` distinct NQ retrieved passages as corpus rows (id, title, text)."""
    rows, seen = [], set()
    for question in nq_rows(40):
        for ctx in question["ctxs"]:
            if ctx["text"] not in seen:
                seen.add(ctx["text"])
                rows.append({"id": f"p{len(rows)}", "title": ctx["title"], "text": ctx["text"]})
            if len(rows) == n:
                return rows
    raise AssertionError("not enough passages")


def write_jsonl(path: Path, lines: list[dict | str]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def job(tmp_path: Path, src: Path, name: str = "out.jsonl", **fields) -> CorpusJob:
    defaults = {"method": "llmlingua", "budget": {"rate": 0.5}, "batch_size": 3, "shard_size": 4}
    return CorpusJob.build(input=src, output=tmp_path / name, **{**defaults, **fields})


class CountingCompressor:
    """Delegates to a real Compressor; counts rows compressed and can fail after ``fail_after`` batches."""

    def __init__(self, inner, fail_after: int | None = None) -> None:
        self.inner, self.fail_after, self.batches, self.rows = inner, fail_after, 0, 0

    def compress_batch(self, requests, *, return_exceptions=False):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.batches += 1
        self.rows += len(requests)
        return self.inner.compress_batch(requests, return_exceptions=return_exceptions)


def test_one_output_row_per_input_row_with_added_fields(tmp_path, tiny_compressor):
    rows = nq_passages(10)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = run_local(job(tmp_path, src), compressor=tiny_compressor, progress=False)
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    for original, row in zip(rows, out, strict=True):
        assert {k: row[k] for k in original} == original  # every input field passed through unchanged
        assert set(ADDED_FIELDS) <= set(row)
        assert row["compression_method"] == "llmlingua"
        assert json.loads(row["compression_params"]) == {"budget": {"rate": 0.5}, "options": {}}
        assert 0 < row["compressed_tokens"] < row["origin_tokens"]
        assert len(row["compressed_text"]) < len(row["text"])
    assert (summary.rows, summary.written, summary.rejects, summary.shards) == (10, 10, 0, 3)
    assert summary.origin_tokens == sum(r["origin_tokens"] for r in out)
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["tokens_saved"] == summary.origin_tokens - summary.compressed_tokens > 0
    assert report["rows_per_s"] > 0 and report["engine"] == "local"
    assert not (tmp_path / "out.jsonl.parts").exists()
    assert (tmp_path / "out.rejects.jsonl").read_text() == ""


def test_bad_rows_go_to_rejects_and_the_job_continues(tmp_path, tiny_compressor):
    good = nq_passages(3)
    lines = [
        good[0],
        {"id": "n1", "text": 12},
        "not json",
        "",  # blank lines are not rows
        "[1, 2]",
        good[1],
        {"id": "e1", "text": "   "},
        {"text": "no id"},
        {"id": "m1", "body": "no text"},
        good[2],
    ]
    src = write_jsonl(tmp_path / "in.jsonl", lines)
    summary = run_local(job(tmp_path, src), compressor=tiny_compressor, progress=False)
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["p0", "p1", "p2"]
    rejects = read_jsonl(tmp_path / "out.rejects.jsonl")
    assert [(r["row"], r["id"]) for r in rejects] == [(1, "n1"), (2, None), (3, None), (5, "e1"), (6, None), (7, "m1")]
    reasons = [r["reason"] for r in rejects]
    assert "is int, not a string" in reasons[0]
    assert reasons[1].startswith("line is not valid JSON")
    assert reasons[2] == "line is JSON list, not an object"
    assert reasons[3] == "text field 'text' is empty"
    assert reasons[4] == "missing id field 'id'"
    assert reasons[5] == "missing text field 'text'"
    assert (summary.rows, summary.written, summary.rejects) == (9, 3, 6)


def test_compression_errors_become_rejects(tmp_path, tiny_compressor):
    rows = nq_passages(4)
    rows[2]["text"] = " ".join([rows[2]["text"]] * 6)  # over the compressor's input limit
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    tiny_compressor.max_input_tokens = 400
    summary = run_local(job(tmp_path, src), compressor=tiny_compressor, progress=False)
    rejects = read_jsonl(tmp_path / "out.rejects.jsonl")
    assert [(r["row"], r["id"]) for r in rejects] == [(2, "p2")]
    assert rejects[0]["reason"].startswith("PayloadTooLarge: input has")
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["p0", "p1", "p3"]
    assert summary.written == 3


def test_resume_skips_completed_shards_without_duplicates_or_loss(tmp_path, tiny_compressor):
    rows = nq_passages(11)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    crashing = CountingCompressor(tiny_compressor, fail_after=3)  # batch 3 = shard 0 (2 batches) + half of shard 1
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_local(job(tmp_path, src, batch_size=2), compressor=crashing, progress=False)
    parts = tmp_path / "out.jsonl.parts"
    assert sorted(p.name for p in parts.glob("part-*")) == ["part-00000.jsonl", "part-00000.meta.json"]
    assert not (tmp_path / "out.jsonl").exists()

    counting = CountingCompressor(tiny_compressor)
    summary = run_local(job(tmp_path, src, batch_size=2), compressor=counting, progress=False)
    assert counting.rows == 11 - 4  # shard 0 was not compressed again
    assert (summary.shards, summary.shards_resumed, summary.rows_processed) == (3, 1, 7)
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    assert summary.origin_tokens == sum(r["origin_tokens"] for r in out)


def test_resume_refuses_shards_of_a_different_job_and_overwrite_starts_over(tmp_path, tiny_compressor):
    src = write_jsonl(tmp_path / "in.jsonl", nq_passages(6))
    crashing = CountingCompressor(tiny_compressor, fail_after=2)
    with pytest.raises(RuntimeError):
        run_local(job(tmp_path, src, batch_size=2), compressor=crashing, progress=False)
    with pytest.raises(InvalidInput, match="different job"):
        run_local(job(tmp_path, src, batch_size=2, budget={"rate": 0.3}), compressor=tiny_compressor, progress=False)
    summary = run_local(
        job(tmp_path, src, budget={"rate": 0.3}), compressor=tiny_compressor, overwrite=True, progress=False
    )
    assert (summary.rows, summary.shards_resumed) == (6, 0)
    with pytest.raises(InvalidInput, match="already exists"):
        run_local(job(tmp_path, src), compressor=tiny_compressor, progress=False)


def test_parquet_in_parquet_out_keeps_column_types(tmp_path, tiny_compressor):
    rows = nq_passages(5)
    table = pa.table(
        {
            "doc_id": pa.array([7, 8, 9, 10, 11], pa.int32()),
            "body": [r["text"] for r in rows[:4]] + [None],
            "tags": [["a"], [], ["b", "c"], None, ["d"]],
        }
    )
    src = tmp_path / "in.parquet"
    pq.write_table(table, src)
    summary = run_local(
        job(tmp_path, src, "out.parquet", text_field="body", id_field="doc_id", budget={"max_tokens": 40}),
        compressor=tiny_compressor,
        progress=False,
    )
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.names == ["doc_id", "body", "tags", *ADDED_FIELDS]
    assert out.schema.field("doc_id").type == pa.int32()
    assert out.column("doc_id").to_pylist() == [7, 8, 9, 10]
    assert out.column("tags").to_pylist() == [["a"], [], ["b", "c"], None]
    for row in out.select(["origin_tokens", "compressed_tokens"]).to_pylist():
        assert row["compressed_tokens"] < row["origin_tokens"] / 2  # max_tokens 40 of ~140
    rejects = read_jsonl(tmp_path / "out.rejects.jsonl")
    assert rejects == [{"row": 4, "id": 11, "reason": "missing text field 'body'"}]
    assert summary.rejects == 1


def test_job_validation_errors_are_clear(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", nq_passages(1))
    with pytest.raises(InvalidInput, match="needs a question"):
        job(tmp_path, src, method="longllmlingua")
    with pytest.raises(InvalidInput, match="unknown method 'nope'; valid methods: .*llmlingua"):
        job(tmp_path, src, method="nope")
    with pytest.raises(InvalidInput, match="unknown option 'windw'"):
        job(tmp_path, src, options={"windw": 3})
    with pytest.raises(InvalidInput, match="same format"):
        job(tmp_path, src, "out.parquet")
    with pytest.raises(InvalidInput, match="unsupported suffix"):
        job(tmp_path, src, "out.csv")
    with pytest.raises(InvalidInput, match="is not a file"):
        job(tmp_path, tmp_path / "missing.jsonl")


def test_cli_refuses_question_methods_with_a_json_error(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", nq_passages(1))
    argv = ["corpus", "-i", str(src), "-o", str(tmp_path / "o.jsonl"), "-m", "longllmlingua", "--rate", "0.5"]
    assert cli_main(argv) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["type"] == "InvalidInput" and error["field"] == "method" and "needs a question" in error["message"]
    assert not (tmp_path / "o.jsonl").exists()


def test_an_interrupted_overwrite_keeps_the_previous_output_and_resumes(tmp_path, tiny_compressor):
    src = write_jsonl(tmp_path / "in.jsonl", nq_passages(6))
    run_local(job(tmp_path, src), compressor=tiny_compressor, progress=False)
    output, report = tmp_path / "out.jsonl", job(tmp_path, src).report_path
    before = output.read_text(), report.read_text()
    crashing = CountingCompressor(tiny_compressor, fail_after=2)
    with pytest.raises(RuntimeError):
        run_local(job(tmp_path, src, budget={"rate": 0.3}), compressor=crashing, overwrite=True, progress=False)
    assert (output.read_text(), report.read_text()) == before  # nothing replaced until a run completes
    summary = run_local(job(tmp_path, src, budget={"rate": 0.3}), compressor=tiny_compressor, progress=False)
    assert summary.shards_resumed == 1 and summary.rows == 6
    assert output.read_text() != before[0] and report.read_text() != before[1]  # the completed run replaced both


def test_ctrl_c_in_the_cli_says_how_to_resume_and_exits_130(tmp_path, capsys, monkeypatch):
    import ctxcompress.corpus.local as local

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(local, "run_local", interrupted)
    src = write_jsonl(tmp_path / "in.jsonl", nq_passages(1))
    argv = ["corpus", "-i", str(src), "-o", str(tmp_path / "o.jsonl"), "-m", "llmlingua", "--rate", "0.5"]
    assert cli_main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted; re-run without --overwrite to resume" in err and "Traceback" not in err
