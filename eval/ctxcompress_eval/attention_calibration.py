"""``ctxcompress calibrate-attention``: fit the ``attention`` method's ``layer_weights`` on labelled questions.

A small fitted probe over the attention layers against raw attention, on ``signals.py`` output (per question,
per document, the mean attention the question window gives the document in each layer; one row per document).
Two scorers of a document, compared by gold-document Recall@k on the report split (rows at or past ``--tune-below``):

* ``raw``: the attention method's default, the mean over the upper third of the layers;
* ``fitted``: ``w · z(layers)``, where each layer's attention is z-normalised over the question's documents and
  ``w`` (one weight per layer) is fitted on the tuning rows by a conditional logit (softmax over the question's
  documents, the gold one the target; L2 penalty ``--l2``), the listwise form of a logistic probe.

Ablations in the literature (Sentinel, arXiv:2505.23277) report raw attention a few points below a small fitted
probe over layer × head features; here the features are per layer (what ``signals.py`` stores).

The weights go into the method's options: ``{"method": "attention", "options": {"layer_weights": [...]}}``
(``--out`` writes that object, with the figures). Labelled data in the NQ multi-document format (``ctxs`` with
``isgold``) goes through ``signals.py`` first.

Example:
    python -m ctxcompress_eval.signals --data-dir ../shared/data --limit 220 --device cuda --out signals.jsonl.gz
    ctxcompress calibrate-attention signals.jsonl.gz --tune-below 100 --out attention_options.json
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np

from ctxcompress_eval.fusion_study import recall_at

__all__ = ["configure", "fit_conditional_logit", "layer_features", "main", "run"]


def layer_features(row: dict) -> np.ndarray:
    """``[documents, layers]``: each layer's attention z-normalised over the question's documents."""
    x = np.asarray(row["attention"], dtype=np.float64)
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)


def fit_conditional_logit(
    features: list[np.ndarray], golds: list[int], *, l2: float = 1.0, steps: int = 100
) -> np.ndarray:
    """Weights ``w`` maximising ``Σ log softmax(X_q w)[gold_q] − l2/2 ‖w‖²``: Newton's method with a backtracking
    line search (the objective is concave; full Newton steps overshoot where the softmax saturates)."""

    def objective(w: np.ndarray) -> float:
        total = -0.5 * l2 * float(w @ w)
        for x, gold in zip(features, golds, strict=True):
            logits = x @ w
            top = logits.max()
            total += logits[gold] - top - float(np.log(np.exp(logits - top).sum()))
        return total

    dim = features[0].shape[1]
    w = np.zeros(dim)
    current = objective(w)
    for _ in range(steps):
        gradient, hessian = -l2 * w, -l2 * np.eye(dim)
        for x, gold in zip(features, golds, strict=True):
            logits = x @ w
            p = np.exp(logits - logits.max())
            p /= p.sum()
            mean = p @ x
            gradient += x[gold] - mean
            hessian -= (x * p[:, None]).T @ x - np.outer(mean, mean)
        direction = -np.linalg.solve(hessian, gradient)
        size = 1.0
        while size > 1e-6 and objective(w + size * direction) < current:
            size /= 2
        w = w + size * direction
        previous, current = current, objective(w)
        if current - previous < 1e-9:
            break
    return w


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("signals", help="signals.py output (.jsonl.gz)")
    parser.add_argument("--tune-below", type=int, default=100, help="rows before this index fit, the rest report")
    parser.add_argument("--l2", type=float, nargs="+", default=[0.1, 1.0, 10.0], help="penalties tried (tuning rows)")
    parser.add_argument("--out", default=None, help='write {"layer_weights": [...], "report": {...}} here')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    configure(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    rows = [json.loads(line) for line in gzip.open(args.signals, "rt", encoding="utf-8")]
    tune, report = rows[: args.tune_below], rows[args.tune_below :]
    if len(tune) < 10 or not report:
        raise SystemExit(f"need at least 10 tuning rows and one report row (got {len(tune)} and {len(report)})")
    layers = len(rows[0]["attention"][0])
    upper = list(range(layers - max(1, layers // 3), layers))

    def raw(subset: list[dict]) -> list[np.ndarray]:
        return [np.asarray(r["attention"])[:, upper].mean(axis=1) for r in subset]

    def fitted(subset: list[dict], w: np.ndarray) -> list[np.ndarray]:
        return [layer_features(r) @ w for r in subset]

    # The penalty is chosen by 5-fold cross-validation on the tuning rows only.
    folds = np.arange(len(tune)) % 5
    chosen, best = args.l2[0], -1.0
    for l2 in args.l2:
        hits = []
        for k in range(5):
            train = [r for r, f in zip(tune, folds, strict=True) if f != k]
            held = [r for r, f in zip(tune, folds, strict=True) if f == k]
            w = fit_conditional_logit([layer_features(r) for r in train], [r["gold"] for r in train], l2=l2)
            hits.append(recall_at(fitted(held, w), [r["gold"] for r in held])[1])
        if np.mean(hits) > best:
            chosen, best = l2, float(np.mean(hits))
    weights = fit_conditional_logit([layer_features(r) for r in tune], [r["gold"] for r in tune], l2=chosen)
    golds = [r["gold"] for r in report]
    table = {
        "raw (upper third mean)": recall_at(raw(report), golds),
        f"fitted (per-layer conditional logit, l2={chosen:g})": recall_at(fitted(report, weights), golds),
    }
    raw_hits = [int(np.argmax(s) == g) for s, g in zip(raw(report), golds, strict=True)]
    fit_hits = [int(np.argmax(s) == g) for s, g in zip(fitted(report, weights), golds, strict=True)]
    diff = np.asarray(fit_hits, dtype=float) - np.asarray(raw_hits, dtype=float)
    rng = np.random.default_rng(0)
    boot = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(10_000)]
    interval = (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))
    print(f"report rows: {len(report)} (tuning rows: {len(tune)}; l2 by 5-fold CV on them: {chosen:g})")
    print("| scorer | R@1 | R@2 | R@3 | R@5 |\n|---|---:|---:|---:|---:|")
    for name, recall in table.items():
        print(f"| {name} | " + " | ".join(f"{recall[k]:.3f}" for k in (1, 2, 3, 5)) + " |")
    print(f"R@1 fitted − raw: {diff.mean():+.3f} [{interval[0]:+.3f}, {interval[1]:+.3f}] (paired bootstrap, 95%)")
    print("weights per layer:", " ".join(f"{w:+.2f}" for w in weights))
    if args.out:
        report_figures = {"recall": table, "r1_difference": float(diff.mean()), "interval": interval, "l2": chosen}
        out = {"layer_weights": [round(float(w), 6) for w in weights], "report": report_figures}
        Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
