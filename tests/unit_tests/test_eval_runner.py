"""End-to-end eval run on 2 real NQ examples with a tiny random scorer: records, reports, resume, CLI errors."""

from __future__ import annotations

import json

import pytest
from ctxcompress_eval.datasets import load_datasets
from ctxcompress_eval.report import write_report
from ctxcompress_eval.runner import EvalConfig, MethodSystem, evaluate, expand_methods, method_variant

from ctxcompress.cli import main
from ctxcompress.errors import InvalidInput
from tests.conftest import DATA_DIR

METHODS = ["none", "truncate", "random", "bm25", "llmlingua", "longllmlingua"]


@pytest.fixture(scope="module")
def datasets():
    return load_datasets(["nq20"], DATA_DIR, positions=[0, 19], limit=1)


def test_two_example_run_writes_records_reports_and_resumes(tiny_compressor, datasets, tmp_path, capsys):
    config = EvalConfig(methods=expand_methods(METHODS), rates=[0.5], out=tmp_path)
    results = evaluate(datasets, config, compressor=tiny_compressor)
    records = {(r["method"], r["rate"]): r for r in results["records"]}
    assert set(records) == {("none", 1.0)} | {(m, 0.5) for m in METHODS[1:]}
    for record in records.values():
        assert record["n"] == 2 and record["n_errors"] == 0
        assert set(record["by_position"]) == {"0", "19"}
        assert abs(record["budget_error_worst"]) <= 0.05
    assert records[("none", 1.0)]["answer_retention"] == 1.0
    assert records[("truncate", 0.5)]["by_position"]["0"]["answer_retention"] == 1.0
    assert records[("truncate", 0.5)]["by_position"]["19"]["answer_retention"] == 0.0
    assert records[("longllmlingua", 0.5)]["recall_at_3"] is not None  # the method ranks
    assert records[("truncate", 0.5)]["recall_at_1"] is None  # truncation does not
    assert results["meta"]["device"] == "cpu" and "transformers" in results["meta"]["versions"]
    err = capsys.readouterr().err
    assert "[eval] nq20 longllmlingua rate=0.5: n=2" in err

    written = write_report(results, tmp_path)
    for name in (
        "results.json",
        "results.md",
        "per_prompt.jsonl",
        "tradeoff.png",
        "retention_by_position.png",
        "latency.png",
    ):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["records"]) == 6 and saved["meta"]["rates"] == [0.5]
    assert "| longllmlingua | 0.500 | 2 |" in (tmp_path / "results.md").read_text()
    assert len(written) == 6

    again = evaluate(datasets, config, compressor=tiny_compressor)
    assert "2 cached, 0 to run" in capsys.readouterr().err
    assert [r["answer_retention"] for r in again["records"]] == [r["answer_retention"] for r in results["records"]]
    assert [r["latency_ms_p50"] for r in again["records"]] == [r["latency_ms_p50"] for r in results["records"]]


def test_method_aliases_and_unknown_names():
    assert expand_methods(["baselines"]) == ["none", "truncate", "random", "bm25", "minilm"]
    assert "anchor-longllmlingua" in expand_methods(["anchor"])
    assert "llmlingua" in expand_methods(["all"])
    with pytest.raises(InvalidInput, match="unknown method"):
        expand_methods(["bm26"])


def test_cli_rejects_bad_arguments_clearly(tmp_path, capsys):
    assert main(["eval", "--out", str(tmp_path), "--methods", "bm26"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["eval", "--out", str(tmp_path), "--rates", "1.5"]) == 2
    assert main(["eval", "--out", str(tmp_path), "--report-only"]) == 2
    assert "no results.json" in capsys.readouterr().err
    assert main(["eval", "--out", str(tmp_path), "--reader-url", "http://x/v1"]) == 2


def test_a_method_variant_is_a_system_of_its_own_with_its_options(tmp_path):
    """``hybrid+scorer=gemma-3-270m+signals=all``: the method's requests carry those options; a variant of an
    unknown method or without ``key=value`` is refused."""
    assert expand_methods(["hybrid+signals=all+sentence_weight=0.25"]) == ["hybrid+signals=all+sentence_weight=0.25"]
    system = MethodSystem("hybrid+signals=all+sentence_weight=0.25", compressor=None)  # type: ignore[arg-type]
    example = load_datasets(["nq20"], DATA_DIR, limit=1)["nq20"][0]
    request = system.request(example, 0.25)
    assert request["method"] == "hybrid" and request["options"] == {"signals": "all", "sentence_weight": 0.25}
    for bad in ["nosuch+signals=all", "hybrid+signals"]:
        with pytest.raises(InvalidInput):
            expand_methods([bad])
    weights = tmp_path / "attention_options.json"  # what `ctxcompress calibrate-attention --out` writes
    weights.write_text('{"layer_weights": [0.5, -1.0], "report": {}}')
    assert method_variant(f"attention+layer_weights=@{weights}") == ("attention", {"layer_weights": [0.5, -1.0]})
