"""Corpus job with the real embedded SmolLM2: local vs Ray engine agree row by row; a killed CLI run resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ctxcompress.corpus import CorpusJob, run_local
from tests.conftest import nq_rows

pytestmark = pytest.mark.real_model

ROOT = Path(__file__).resolve().parents[2]


def nq_passages(n: int, skip: int = 0) -> list[dict]:
    """Distinct NQ retrieved passages (shortest first, to keep CPU time low) as corpus rows."""
    seen: dict[str, str] = {}
    for question in nq_rows(30, gold=0):
        for ctx in question["ctxs"]:
            seen.setdefault(ctx["text"], ctx["title"])
    texts = sorted(seen, key=len)[skip : skip + n]
    return [{"id": f"nq{skip + i}", "title": seen[t], "text": t} for i, t in enumerate(texts)]


def write_jsonl(path: Path, lines: list[dict | str]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_worker_niceness", "0")  # as run_ray does for the instance it starts
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_engine_matches_local_engine(tmp_path, real_compressor, local_ray):
    from ctxcompress.corpus.ray_engine import run_ray

    rows = nq_passages(4)
    lines = rows[:2] + [{"id": "bad", "text": ["not", "text"]}, "{truncated"] + rows[2:]
    src = write_jsonl(tmp_path / "in.jsonl", lines)
    jobs = {
        engine: CorpusJob.build(
            input=src, output=tmp_path / f"{engine}.jsonl", method="llmlingua", budget={"rate": 0.5}, batch_size=4
        )
        for engine in ("local", "ray")
    }
    local = run_local(jobs["local"], compressor=real_compressor, progress=False)
    # two 1-CPU actors take every CPU of the 2-CPU instance: reading must still proceed, order must hold
    remote = run_ray(jobs["ray"], concurrency=2, num_cpus_per_worker=1, progress=False)

    local_rows, ray_rows = read_jsonl(tmp_path / "local.jsonl"), read_jsonl(tmp_path / "ray.jsonl")
    assert [r["id"] for r in ray_rows] == [r["id"] for r in rows]
    assert {r["id"]: r["compressed_text"] for r in ray_rows} == {r["id"]: r["compressed_text"] for r in local_rows}
    assert ray_rows == local_rows
    assert read_jsonl(tmp_path / "ray.rejects.jsonl") == read_jsonl(tmp_path / "local.rejects.jsonl")
    assert [r["row"] for r in read_jsonl(tmp_path / "ray.rejects.jsonl")] == [2, 3]
    for summary in (local, remote):
        assert (summary.rows, summary.written, summary.rejects) == (6, 4, 2)
        assert 0 < summary.compressed_tokens < summary.origin_tokens
    assert remote.tokens_saved == local.tokens_saved
    assert json.loads((tmp_path / "ray.report.json").read_text())["engine"] == "ray"


def test_ray_engine_parquet(tmp_path, local_ray):
    import pyarrow as pa

    from ctxcompress.corpus.ray_engine import run_ray

    rows = nq_passages(2, skip=4)
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"pid": [1, 2, 3], "passage": [r["text"] for r in rows] + [""]}), src)
    job = CorpusJob.build(
        input=src,
        output=tmp_path / "out.parquet",
        method="llmlingua",
        budget={"max_tokens": 48},
        text_field="passage",
        id_field="pid",
    )
    summary = run_ray(job, concurrency=1, progress=False)
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.column("pid").to_pylist() == [1, 2]
    assert all(0 < n < 60 for n in out.column("compressed_tokens").to_pylist())
    reject = {"row": 2, "id": 3, "reason": "text field 'passage' is empty"}
    assert read_jsonl(tmp_path / "out.rejects.jsonl") == [reject]
    assert (summary.written, summary.rejects) == (2, 1)


def test_killed_cli_run_resumes_without_duplicates_or_loss(tmp_path, real_compressor):
    rows = nq_passages(8, skip=6)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    argv = [
        "corpus",
        "-i",
        str(src),
        "-o",
        str(out),
        "-m",
        "llmlingua",
        "--rate",
        "0.5",
        "--batch-size",
        "2",
        "--shard-size",
        "2",
        "--no-progress",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctxcompress.cli", *argv],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    parts = tmp_path / "out.jsonl.parts"
    deadline = time.monotonic() + 240
    try:
        while len(list(parts.glob("*.meta.json"))) < 2:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no shard finished in time"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not out.exists(), "the run finished before it was killed"
    done_before = len(list(parts.glob("*.meta.json")))

    job = CorpusJob.build(input=src, output=out, method="llmlingua", budget={"rate": 0.5}, batch_size=2, shard_size=2)
    summary = run_local(job, compressor=real_compressor, progress=False)
    assert summary.shards_resumed == done_before >= 2
    assert summary.rows_processed == 8 - 2 * done_before
    written = read_jsonl(out)
    assert [r["id"] for r in written] == [r["id"] for r in rows]  # each row exactly once, in input order
    assert summary.rows == summary.written == 8
    assert not parts.exists()


@pytest.mark.parametrize("method", ["cpc", "tcra-semantic"])
def test_other_question_agnostic_methods(tmp_path, real_compressor, method):
    from ctxcompress.methods import method_names

    if method not in method_names():
        pytest.skip(f"method {method!r} is not registered")
    rows = nq_passages(3, skip=14)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    job = CorpusJob.build(input=src, output=tmp_path / "out.jsonl", method=method, budget={"rate": 0.5})
    summary = run_local(job, compressor=real_compressor, progress=False)
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    assert all(r["compression_method"] == method and 0 < r["compressed_tokens"] < r["origin_tokens"] for r in out)
    assert (summary.written, summary.rejects) == (3, 0)
