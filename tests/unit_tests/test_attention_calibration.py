"""``ctxcompress calibrate-attention``: the conditional-logit probe fitted over per-layer attention signals."""

from __future__ import annotations

import gzip
import json

import numpy as np
from ctxcompress_eval.attention_calibration import fit_conditional_logit, main


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    """Questions with 10 documents and 4 layers: only layer 2 tells the gold document apart."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n):
        attention = rng.normal(size=(10, 4))
        gold = int(rng.integers(10))
        attention[gold, 2] += 2.5
        rows.append({"id": f"q{q}", "gold": gold, "attention": attention.tolist()})
    return rows


def test_the_fit_finds_the_informative_layer() -> None:
    rows = synthetic_rows(150)
    features = [np.asarray(r["attention"]) for r in rows]
    weights = fit_conditional_logit(features, [r["gold"] for r in rows], l2=1.0)
    assert int(np.argmax(weights)) == 2 and weights[2] > 3 * np.abs(np.delete(weights, 2)).max()
    hits = [int(np.argmax(x @ weights) == r["gold"]) for x, r in zip(features, rows, strict=True)]
    assert np.mean(hits) > 0.6  # chance is 0.1


def test_the_command_writes_method_options(tmp_path, capsys) -> None:  # noqa: ANN001
    signals = tmp_path / "signals.jsonl.gz"
    with gzip.open(signals, "wt", encoding="utf-8") as handle:
        for row in synthetic_rows(140, seed=1):
            handle.write(json.dumps(row) + "\n")
    out = tmp_path / "options.json"
    assert main([str(signals), "--tune-below", "100", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert len(written["layer_weights"]) == 4 and int(np.argmax(written["layer_weights"])) == 2
    assert written["report"]["recall"]["raw (upper third mean)"]["1"] < 0.5  # layer 3 alone (the upper third)
    assert "R@1 fitted − raw" in capsys.readouterr().out
