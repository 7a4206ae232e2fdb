"""Eval harness: --skip/--limit row selection, NQ loss breakdown, paired comparison with a bootstrap interval."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from ctxcompress_eval.cli import configure
from ctxcompress_eval.datasets import Example, load_datasets, load_nq
from ctxcompress_eval.metrics import (
    loss_breakdown,
    loss_cause,
    paired_bootstrap,
    paired_comparison,
    paired_stats,
)
from ctxcompress_eval.outputs import Output
from ctxcompress_eval.report import markdown_report, write_report
from ctxcompress_eval.runner import EvalConfig, evaluate, paired_section, prompt_row

from ctxcompress.cli import main
from ctxcompress.errors import InvalidInput
from tests.conftest import DATA_DIR, nq_rows

# --- --skip / --limit ---------------------------------------------------------------------------------------------


def test_skip_then_limit_selects_rows_and_ids_keep_the_file_row_index():
    raw = {p: nq_rows(103, gold=p) for p in (0, 9)}
    examples = load_nq(DATA_DIR, docs=20, positions=[0, 9], skip=100, limit=3)
    assert [e.id for e in examples] == [f"nq20-g{p}-{i}" for p in (0, 9) for i in (100, 101, 102)]
    for example in examples:
        row = raw[example.position][int(example.id.rsplit("-", 1)[1])]
        assert example.meta["question"] == row["question"]
        assert example.answers == row["answers"]
        assert example.documents[example.gold_index].endswith(row["ctxs"][example.position]["text"])
    # The same rows, with the same ids, as the tail of an unskipped run: cached outputs line up.
    head = load_nq(DATA_DIR, docs=20, positions=[0], limit=103)
    assert [(e.id, e.documents) for e in head[100:]] == [(e.id, e.documents) for e in examples[:3]]
    # Skip past the end: nothing; no limit: every row after the skip.
    assert load_nq(DATA_DIR, docs=20, positions=[0], skip=220) == []
    assert [e.id for e in load_nq(DATA_DIR, docs=20, positions=[0], skip=218)] == ["nq20-g0-218", "nq20-g0-219"]


def test_skip_reaches_every_dataset_and_rejects_negative_values():
    data = load_datasets(["gsm8k", "longbench"], DATA_DIR, skip=2, limit=2, longbench_tasks=["2wikimqa"])
    assert [e.id for e in data["gsm8k"]] == ["gsm8k-2", "gsm8k-3"]
    all_wiki = load_datasets(["longbench"], DATA_DIR, limit=4, longbench_tasks=["2wikimqa"])["longbench"]
    assert [e.id for e in data["longbench"]] == [e.id for e in all_wiki[2:4]]
    with pytest.raises(InvalidInput, match="skip"):
        load_datasets(["nq20"], DATA_DIR, skip=-1)


def test_cli_parses_skip_and_paired_reference(tmp_path):
    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--skip", "100", "--limit", "120"])
    assert (args.skip, args.limit, args.paired_reference) == (100, 120, None)
    args = parser.parse_args(["--out", str(tmp_path), "--paired-reference", "bm25"])
    assert (args.skip, args.paired_reference) == (0, "bm25")


# --- paired bootstrap ---------------------------------------------------------------------------------------------


def _pairs(n: int, p_win: float, p_loss: float) -> list[tuple[bool, bool]]:
    """``n`` pairs with exactly these shares of wins and losses (ties split between both kept and both lost)."""
    wins, losses = round(n * p_win), round(n * p_loss)
    ties = n - wins - losses
    return (
        [(True, False)] * wins
        + [(False, True)] * losses
        + [(True, True)] * (ties // 2)
        + [(False, False)] * (ties - ties // 2)
    )


def test_bootstrap_interval_contains_the_true_difference_and_narrows_with_more_data():
    small = paired_bootstrap([a - b for a, b in _pairs(200, 0.2, 0.1)])
    large = paired_bootstrap([a - b for a, b in _pairs(4000, 0.2, 0.1)])
    assert small[0] < 0.1 < small[1] and large[0] < 0.1 < large[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 3  # ~ 1/sqrt(20)
    # About the normal-theory width (sd of the differences = sqrt(0.3 - 0.01) here).
    assert large[1] - large[0] == pytest.approx(2 * 1.96 * np.sqrt(0.29 / 4000), rel=0.1)
    # Sampled from a population whose true difference is 0.1: still covered; fixed seed: reproducible.
    rng = np.random.default_rng(7)
    draws = rng.choice([1.0, -1.0, 0.0], size=1000, p=[0.25, 0.15, 0.6])
    interval = paired_bootstrap(draws)
    assert interval[0] < 0.1 < interval[1]
    assert paired_bootstrap(draws) == interval
    assert paired_bootstrap([]) is None


def test_paired_stats_counts_wins_losses_and_retention():
    stats = paired_stats(_pairs(10, 0.3, 0.1), resamples=2000)
    assert (stats["n"], stats["wins"], stats["losses"]) == (10, 3, 1)
    assert stats["retention"] == 0.6 and stats["reference_retention"] == 0.4  # 3 wins + 3 both kept; 1 + 3
    assert stats["diff"] == pytest.approx(0.2)
    assert stats["ci95"][0] <= 0.2 <= stats["ci95"][1]


def _row(method, example, kept, *, rate=0.5, position=0, error=None):
    return {
        "id": f"nq20-g{position}-{example}",
        "dataset": "nq20",
        "method": method,
        "rate": rate,
        "position": position,
        "error": error,
        "answer_retained": None if error else kept,
    }


def test_paired_comparison_pairs_by_example_id_per_rate_and_position():
    ref = "anchor-longllmlingua"
    rows = [
        # position 0: examples 0-3; the method wins 0 and 1, loses 2, ties 3
        *(_row(ref, i, k) for i, k in enumerate([False, False, True, True])),
        *(_row("longllmlingua", i, k) for i, k in enumerate([True, True, False, True])),
        # position 9: examples 0-1; one tie, one loss; example 2 only in the method, example 3 failed
        *(_row(ref, i, k, position=9) for i, k in enumerate([True, True])),
        *(_row("longllmlingua", i, k, position=9) for i, k in enumerate([True, False, True])),
        _row("longllmlingua", 3, False, position=9, error="boom"),
        _row(ref, 3, True, position=9),
        # another rate: paired separately; the baseline at rate 1.0 has no reference there
        _row(ref, 0, False, rate=0.25),
        _row("longllmlingua", 0, True, rate=0.25),
        _row("none", 0, True, rate=1.0),
    ]
    comparisons = {(c["method"], c["rate"]): c for c in paired_comparison(rows, ref, resamples=500)}
    assert set(comparisons) == {("longllmlingua", 0.5), ("longllmlingua", 0.25)}
    c = comparisons[("longllmlingua", 0.5)]
    assert (c["n"], c["wins"], c["losses"]) == (6, 2, 2)
    assert (c["retention"], c["reference_retention"], c["diff"]) == (0.6667, 0.6667, 0.0)
    assert c["reference"] == ref and c["ci95"][0] < 0 < c["ci95"][1]
    assert c["by_position"]["0"] | {"ci95": None} == {
        "n": 4,
        "retention": 0.75,
        "reference_retention": 0.5,
        "diff": 0.25,
        "wins": 2,
        "losses": 1,
        "ci95": None,
    }
    assert (c["by_position"]["9"]["n"], c["by_position"]["9"]["wins"], c["by_position"]["9"]["losses"]) == (2, 0, 1)
    assert comparisons[("longllmlingua", 0.25)]["wins"] == 1
    section = paired_section(rows)
    assert section["reference"] == ref and section["resamples"] == 10_000 and len(section["comparisons"]) == 2
    assert paired_section(rows, "bm25") is None  # not in the run


# --- loss breakdown -----------------------------------------------------------------------------------------------

_DOCS = [
    "Document [1](Title: Rome) Rome is the capital of Italy.",
    "Document [2](Title: France) The capital of France is Paris, on the Seine.",
    "Document [3](Title: Spain) Madrid is the capital of Spain.",
]


def _example() -> Example:
    return Example(
        id="nq20-g1-0",
        dataset="nq20",
        documents=list(_DOCS),
        question="Question: capital of France?\nAnswer:",
        instruction="Answer.",
        answers=["Paris"],
        gold_index=1,
        position=1,
    )


def _output(kept: list[tuple[int, str]], source: str = "index") -> Output:
    return Output(
        id="nq20-g1-0",
        method="m",
        rate=0.5,
        context="\n\n".join(t for _, t in kept),
        kept=kept,
        kept_source=source,  # type: ignore[arg-type]
        origin_tokens=100,
        compressed_tokens=50,
        target_tokens=50,
    )


def test_loss_breakdown_classifies_hand_made_outputs():
    cases = {
        "kept": _output([(1, _DOCS[1])]),
        "gold_dropped": _output([(0, _DOCS[0]), (2, _DOCS[2])]),
        "gold_dropped_empty": _output([]),
        "pruned_in_gold": _output([(0, _DOCS[0]), (1, "Document [2](Title: France) The capital of France is")]),
        "other_unknown": _output([(0, "Rome is the capital")], source="none"),
        "other_unattributed": _output([(-1, "capital of"), (0, _DOCS[0])], source="markers+overlap"),
    }
    rows = {name: prompt_row(_example(), out) for name, out in cases.items()}
    assert {name: r["loss"] for name, r in rows.items()} == {
        "kept": None,
        "gold_dropped": "gold_dropped",
        "gold_dropped_empty": "gold_dropped",
        "pruned_in_gold": "pruned_in_gold",
        "other_unknown": "other",
        "other_unattributed": "other",
    }
    assert rows["kept"]["gold_kept"] is True and rows["gold_dropped"]["gold_kept"] is False
    assert rows["other_unknown"]["gold_kept"] is None and all(r["answer_in_full"] for r in rows.values())
    # An attributed anchor output that kept the gold document but lost the answer in it.
    anchor = prompt_row(_example(), _output([(1, "capital of France")], source="markers+overlap"))
    assert anchor["loss"] == "pruned_in_gold"

    breakdown = loss_breakdown([*rows.values(), {"error": "boom", "answer_in_full": True}])
    assert breakdown == {
        "n_answer_in_full": 6,
        "n_lost": 5,
        "loss_rate": 0.8333,
        "counts": {"gold_dropped": 2, "pruned_in_gold": 1, "other": 2},
        "fractions": {"gold_dropped": 0.4, "pruned_in_gold": 0.2, "other": 0.4},
    }
    assert loss_breakdown([{"answer_in_full": False, "loss": None}]) is None


def test_loss_cause_needs_an_answer_in_the_full_context_and_a_lost_one():
    lost = dict(answer_retained=False, gold_kept=True, answer_in_gold=True, gold_answer_retained=False)
    assert loss_cause(answer_in_full=True, **lost) == "pruned_in_gold"
    assert loss_cause(answer_in_full=False, **lost) is None
    assert loss_cause(answer_in_full=True, **(lost | {"answer_retained": True})) is None
    # The answer was only in another document: the gold document's pruning is not the cause.
    assert loss_cause(answer_in_full=True, **(lost | {"answer_in_gold": False})) == "other"


# --- end to end ---------------------------------------------------------------------------------------------------


def test_run_reports_loss_breakdown_and_paired_table(tiny_compressor, tmp_path, capsys):
    datasets = load_datasets(["nq20"], DATA_DIR, positions=[0, 19], skip=100, limit=1)
    assert [e.id for e in datasets["nq20"]] == ["nq20-g0-100", "nq20-g19-100"]
    config = EvalConfig(methods=["truncate", "bm25"], rates=[0.5], out=tmp_path, paired_reference="bm25")
    results = evaluate(datasets, config, compressor=tiny_compressor)
    truncate = next(r for r in results["records"] if r["method"] == "truncate")
    breakdown = truncate["loss_breakdown"]
    assert breakdown["n_answer_in_full"] == 2 and breakdown["n_lost"] >= 1  # gold at 19 is cut off
    assert breakdown["counts"]["gold_dropped"] >= 1
    (comparison,) = results["paired"]["comparisons"]
    assert comparison["method"] == "truncate" and comparison["n"] == 2
    assert set(comparison["by_position"]) == {"0", "19"}

    write_report(results, tmp_path, plots=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["paired"]["reference"] == "bm25" and "loss_breakdown" in saved["records"][0]
    text = (tmp_path / "results.md").read_text()
    assert "paired vs bm25: Δ retention [95% CI], W/L, n" in text and "lost answers by cause" in text
    assert text == markdown_report(results)

    # Re-rendered against another reference from per_prompt.jsonl, without running anything.
    assert main(["eval", "--out", str(tmp_path), "--report-only", "--no-plots", "--paired-reference", "truncate"]) == 0
    capsys.readouterr()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["paired"]["reference"] == "truncate"
    assert [c["method"] for c in saved["paired"]["comparisons"]] == ["bm25"]
