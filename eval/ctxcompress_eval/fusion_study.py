"""Which relevance signals, layers and fusion weights rank the gold document first? Tuned on one split, reported
on the other.

Reads ``signals.py`` output. Per signal: gold-document Recall@k. Attention: per layer band. Fusion: per question,
each signal is z-normalised over the documents and the weighted sum ranks them (``zsum``); reciprocal rank
fusion (``rrf``, k=60) for comparison. Weights are searched on a coarse grid on the tuning rows
(``--tune-below``: rows with a smaller row index) and the best setting is reported on the remaining rows.

Example:
    python -m ctxcompress_eval.fusion_study signals.jsonl.gz --tune-below 100 --json fusion.json
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
from pathlib import Path

import numpy as np

from ctxcompress_eval.metrics import paired_stats

__all__ = ["held_out_arguments", "hits_at", "main", "paired_hits", "recall_at", "zsum"]

KS = (1, 2, 3, 5)
BANDS = {"all": (0, 1.0), "upper2/3": (1 / 3, 1.0), "middle": (1 / 3, 2 / 3), "upper1/3": (2 / 3, 1.0)}


def recall_at(scores: list[np.ndarray], golds: list[int]) -> dict[int, float]:
    ranks = [int((np.argsort(-s, kind="stable") == g).nonzero()[0][0]) for s, g in zip(scores, golds, strict=True)]
    return {k: float(np.mean([r < k for r in ranks])) for k in KS}


def hits_at(scores: list[np.ndarray], golds: list[int], k: int) -> list[bool]:
    """Per question, whether the gold document ranks in the top ``k`` (paired comparisons of rankings)."""
    return [g in np.argsort(-s, kind="stable")[:k] for s, g in zip(scores, golds, strict=True)]


def paired_hits(ours: list[bool], theirs: list[bool], label: str) -> dict:
    """The paired difference of two variants' per-question hits (``metrics.paired_stats``: mean, 95% interval,
    wins/losses), printed after ``label``."""
    stats = paired_stats(list(zip(ours, theirs, strict=True)))
    print(f"{label}: {stats['diff']:+.3f} {stats['ci95']} (W/L {stats['wins']}/{stats['losses']})")
    return stats


def held_out_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a study on ``signals.py`` output over the held-out dev questions (rows 0-99 tuned)."""
    parser.add_argument("signals", type=Path, help="signals.py output (gold position 0 rows)")
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    parser.add_argument("--skip", type=int, default=100, help="first row (rows 0-99 tuned hybrid's weights)")
    parser.add_argument("--limit", type=int, default=120)
    parser.add_argument("--out", type=Path, required=True)


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-9)


def _rr(x: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(x))
    ranks[np.argsort(-x, kind="stable")] = np.arange(len(x))
    return 1.0 / (60 + ranks)


def zsum(signals: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    return sum(w * _z(signals[name]) for name, w in weights.items() if w)


def _band(matrix: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    layers = matrix.shape[1]
    lo, hi = int(band[0] * layers), max(int(band[0] * layers) + 1, int(band[1] * layers))
    return np.log(matrix[:, lo:hi].mean(axis=1) + 1e-9)


def _load(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _signals(row: dict, band: tuple[float, float]) -> dict[str, np.ndarray]:
    return {
        "lm_statement": np.array(row["lm_statement"]),
        "lm_question": np.array(row["lm_question"]),
        "attention": _band(np.array(row["attention"]), band),
        "attention_max": _band(np.array(row["attention_max"]), band),
        "encoder": np.array(row["encoder"]),
        "encoder_sentence": np.array(row["encoder_sentence"]),
        "bm25": np.array(row["bm25"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("signals", type=Path)
    parser.add_argument("--tune-below", type=int, default=100, help="rows with a smaller row index tune")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = _load(args.signals)
    row_index = [int(r["id"].rsplit("-", 1)[1]) for r in rows]
    tune = [r for r, i in zip(rows, row_index, strict=True) if i < args.tune_below]
    held = [r for r, i in zip(rows, row_index, strict=True) if i >= args.tune_below]
    report: dict = {"tune_rows": len(tune), "report_rows": len(held), "single": {}, "fusion": {}}

    print(f"tune {len(tune)} questions, report {len(held)}; gold-document Recall@k (report split)")
    print(f"{'signal':32} " + " ".join(f"R@{k:<4}" for k in KS))
    for band_name, band in BANDS.items():
        for name in (
            "lm_statement",
            "lm_question",
            "attention",
            "attention_max",
            "encoder",
            "encoder_sentence",
            "bm25",
        ):
            if band_name != "all" and not name.startswith("attention"):
                continue
            label = f"{name} [{band_name}]" if name.startswith("attention") else name
            recall = recall_at([_signals(r, band)[name] for r in held], [r["gold"] for r in held])
            report["single"][label] = recall
            print(f"{label:32} " + " ".join(f"{recall[k]:.3f}" for k in KS))

    names = ["lm_question", "lm_statement", "attention", "encoder", "encoder_sentence", "bm25"]
    grid = [0.0, 0.5, 1.0, 2.0]
    best: tuple[float, dict, str] = (-1.0, {}, "")
    for band_name, band in BANDS.items():
        tune_signals = [_signals(r, band) for r in tune]
        golds = [r["gold"] for r in tune]
        for combo in itertools.product(grid, repeat=len(names)):
            if not any(combo):
                continue
            weights = dict(zip(names, combo, strict=True))
            recall = recall_at([zsum(s, weights) for s in tune_signals], golds)
            objective = recall[1] + 0.5 * recall[3]
            if objective > best[0]:
                best = (objective, weights, band_name)
    _, weights, band_name = best
    held_signals = [_signals(r, BANDS[band_name]) for r in held]
    golds = [r["gold"] for r in held]
    fused = recall_at([zsum(s, weights) for s in held_signals], golds)
    rrf = recall_at([sum(_rr(s[n]) for n in names if weights[n]) for s in held_signals], golds)
    for label, setting in (
        ("lm+encoder+bm25 (no attention)", {"lm_statement": 1.0, "encoder": 1.0, "bm25": 0.5}),
        ("encoder+encoder_sentence+bm25 (CPU)", {"encoder": 1.0, "encoder_sentence": 1.0, "bm25": 0.5}),
    ):
        recall = recall_at([zsum(s, setting) for s in held_signals], golds)
        report["fusion"][label] = {"weights": setting, "recall": recall}
        print(f"{label:32} " + " ".join(f"{recall[k]:.3f}" for k in KS))
    report["fusion"]["tuned zsum"] = {"weights": weights, "band": band_name, "recall": fused}
    report["fusion"]["tuned rrf"] = {"weights": weights, "band": band_name, "recall": rrf}
    print(f"{'tuned zsum':32} " + " ".join(f"{fused[k]:.3f}" for k in KS) + f"  weights {weights} band {band_name}")
    print(f"{'same signals, rrf':32} " + " ".join(f"{rrf[k]:.3f}" for k in KS))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
