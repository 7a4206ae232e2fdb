"""Reports of a run: ``results.json``, ``per_prompt.jsonl``, ``results.md`` (tables) and PNG plots.

Tables per dataset: the aggregates, answer retention by gold position (NQ), the loss breakdown (NQ) and the
paired comparison against the reference system (``paired`` in results.json).

Plots: answer retention against compression ratio per method (trade-off curve, one panel per dataset), answer
retention by gold-document position (NQ, one panel per rate: "lost in the middle"), latency per method.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ctxcompress_eval.metrics import LOSS_CAUSES

__all__ = ["load_results", "markdown_report", "plot_all", "write_report"]

_COLUMNS = (
    ("method", "method"),
    ("rate", "rate"),
    ("n", "n"),
    ("ratio", "ratio"),
    ("answer_retention", "answer ret."),
    ("gold_answer_retention", "gold-doc ret."),
    ("recall_at_1", "R@1"),
    ("recall_at_3", "R@3"),
    ("budget_error_median", "budget err. med."),
    ("budget_error_worst", "budget err. worst"),
    ("latency_ms_p50", "latency p50 ms"),
    ("latency_ms_p90", "latency p90 ms"),
    ("tokens_per_s", "tokens/s"),
)
_MARKERS = "osD^v<>phX*"
_OPTIONAL = (
    ("demo_conclusion_retention", "demo concl. ret."),
    ("reader_accuracy", "reader acc."),
    ("attribution_agreement", "attrib. agree"),
    ("n_errors", "errors"),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


def _table(records: Sequence[dict[str, Any]]) -> list[str]:
    columns = list(_COLUMNS) + [c for c in _OPTIONAL if any(r.get(c[0]) for r in records)]
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for record in records:
        lines.append("| " + " | ".join(_fmt(record.get(key)) for key, _ in columns) + " |")
    return lines


def _count_share(count: int, share: float | None) -> str:
    return f"{count} ({_fmt(share)})"


def _loss_table(dataset: str, records: Sequence[dict[str, Any]]) -> list[str]:
    rows = [r for r in records if r.get("loss_breakdown")]
    if not rows:
        return []
    out = [
        "",
        f"### {dataset}: lost answers by cause (count, share of lost)",
        "",
        "| method | rate | answer in full | lost | gold dropped | pruned in gold | other |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = r["loss_breakdown"]
        cells = [_count_share(b["counts"][c], b["fractions"][c]) for c in LOSS_CAUSES]
        lost = _count_share(b["n_lost"], b["loss_rate"])
        out.append(
            f"| {r['method']} | {_fmt(r['rate'])} | {b['n_answer_in_full']} | {lost} | " + " | ".join(cells) + " |"
        )
    return out


def _delta(stats: dict[str, Any]) -> str:
    if stats.get("diff") is None:
        return "–"
    ci = stats.get("ci95")
    interval = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
    return f"{stats['diff']:+.3f}{interval}"


def _paired_table(dataset: str, paired: dict[str, Any] | None) -> list[str]:
    rows = [c for c in paired["comparisons"] if c["dataset"] == dataset] if paired else []
    if not paired or not rows:
        return []
    ref = paired["reference"]
    out = [
        "",
        f"### {dataset}: paired vs {ref}: Δ retention [95% CI], W/L, n",
        "",
        f"| method | rate | n | ret. | {ref} ret. | Δ [95% CI] | W/L |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in rows:
        out.append(
            f"| {c['method']} | {_fmt(c['rate'])} | {c['n']} | {_fmt(c['retention'])} | "
            f"{_fmt(c['reference_retention'])} | {_delta(c)} | {c['wins']}/{c['losses']} |"
        )
    out += _by_position(
        f"#### {dataset}: paired vs {ref} by gold position: Δ retention [95% CI] (W/L, n)",
        rows,
        lambda s: f"{_delta(s)} ({s['wins']}/{s['losses']}, {s['n']})" if s else "–",
    )
    return out


def _by_position(title: str, rows: list[dict[str, Any]], cell: Callable[[dict | None], str]) -> list[str]:
    """A method × gold-position table of ``cell(row["by_position"][position])`` (empty when no row has one)."""
    positional = [r for r in rows if r.get("by_position")]
    if not positional:
        return []
    positions = sorted({int(p) for r in positional for p in r["by_position"]})
    out = ["", title, "", "| method | rate | " + " | ".join(str(p) for p in positions) + " |"]
    out.append("|---|---|" + "---|" * len(positions))
    for r in positional:
        cells = [cell(r["by_position"].get(str(p))) for p in positions]
        out.append(f"| {r['method']} | {_fmt(r['rate'])} | " + " | ".join(cells) + " |")
    return out


def markdown_report(results: dict[str, Any]) -> str:
    """The markdown tables: per dataset, aggregates, then (NQ) retention by gold position and lost answers, then
    the paired comparison."""
    meta, records = results["meta"], results["records"]
    out = [
        "# ctxcompress eval results",
        "",
        f"- date: {meta['date']}, git {meta.get('git_commit')}, device `{meta['device']}`"
        f" ({meta['machine'].get('gpu') or str(meta['machine']['cpu_count']) + ' CPU cores'})",
        f"- command: `{meta['command']}`",
        f"- scoring model: {meta['models']['scorer']}; versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- anchor: llmlingua {meta['anchor'].get('versions', {}).get('llmlingua', '?')} unmodified in "
        f"`{Path(meta['anchor']['venv']).name}` (transformers "
        f"{meta['anchor'].get('versions', {}).get('transformers', '?')}); ready: {meta['anchor']['ready']}",
        f"- {meta['latency_note']}",
        "- answer ret. = a gold answer occurs in the compressed context; gold-doc ret. = in the kept part of the "
        "gold document (anchor: kept text attributed to documents by `Document [i]` markers, else word overlap; "
        "attrib. agree = how often that attribution gives the same verdict as the true indices, measured on "
        "ctxcompress outputs); R@k = gold document in the method's top-k ranking; budget err. = "
        "compressed/target − 1; ratio = origin/compressed tokens (cl100k_base).",
    ]
    if meta.get("skipped"):
        out.append("- skipped: " + "; ".join(f"{k}: {v}" for k, v in meta["skipped"].items()))
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        rows = [r for r in records if r["dataset"] == dataset]
        out += ["", f"## {dataset}", "", *_table(rows)]
        out += _by_position(
            f"### {dataset}: answer retention by gold position (0-based)",
            rows,
            lambda s: _fmt((s or {}).get("answer_retention")),
        )
        out += _loss_table(dataset, rows)
        out += _paired_table(dataset, results.get("paired"))
    return "\n".join(out) + "\n"


def _retention_key(records: Sequence[dict[str, Any]]) -> str:
    if any(r.get("answer_retention") is not None for r in records):
        return "answer_retention"
    return "demo_conclusion_retention"


def plot_all(results: dict[str, Any], out: Path) -> list[Path]:
    """Write the PNG plots; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = results["records"]
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    paths: list[Path] = []
    if not records:
        return paths

    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        rows = [r for r in records if r["dataset"] == dataset]
        key = _retention_key(rows)
        for k, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
            points = sorted(
                (r["ratio"], r[key])
                for r in rows
                if r["method"] == method and r.get("ratio") and r.get(key) is not None
            )
            if points:
                ax.plot(*zip(*points, strict=True), marker=_MARKERS[k % len(_MARKERS)], label=method, alpha=0.8)
        ax.set(
            title=dataset,
            xlabel="compression ratio (origin / compressed tokens)",
            ylabel=key.replace("_", " "),
            ylim=(-0.05, 1.05),
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "tradeoff.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    positional = [r for r in records if r.get("by_position")]
    if positional:
        rates = sorted({r["rate"] for r in positional if r["rate"] < 1.0}, reverse=True) or [1.0]
        fig, axes = plt.subplots(1, len(rates), figsize=(6 * len(rates), 4.5), squeeze=False)
        for ax, rate in zip(axes[0], rates, strict=True):
            for k, r in enumerate(positional):
                if r["rate"] not in (rate, 1.0):
                    continue
                points = sorted(
                    (int(p), a["answer_retention"])
                    for p, a in r["by_position"].items()
                    if a.get("answer_retention") is not None
                )
                if points:
                    ax.plot(
                        *zip(*points, strict=True),
                        marker=_MARKERS[k % len(_MARKERS)],
                        alpha=0.8,
                        label=f"{r['dataset']} {r['method']}",
                        linestyle="--" if r["rate"] == 1.0 else "-",
                    )
            ax.set(
                title=f"rate {rate:g}",
                xlabel="gold document position (0-based)",
                ylabel="answer retention",
                ylim=(-0.05, 1.05),
            )
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(out / "retention_by_position.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        rows = [r for r in records if r["dataset"] == dataset and r.get("latency_ms_p50")]
        labels = [f"{r['method']}\n@{r['rate']:g}" for r in rows]
        ax.bar(
            range(len(rows)),
            [r["latency_ms_p50"] for r in rows],
            yerr=[[0] * len(rows), [r["latency_ms_p90"] - r["latency_ms_p50"] for r in rows]],
            capsize=3,
        )
        ax.set_xticks(range(len(rows)), labels, rotation=70, fontsize=7)
        ax.set(title=f"{dataset}: latency per prompt (p50, bar to p90)", ylabel="ms", yscale="log")
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    paths.append(out / "latency.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def load_results(out: Path) -> dict[str, Any]:
    """Read back what :func:`write_report` wrote (to re-render tables and plots without re-running)."""
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    rows_path = out / "per_prompt.jsonl"
    rows = (
        [json.loads(line) for line in rows_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if rows_path.is_file()
        else []
    )
    return {"meta": data["meta"], "records": data["records"], "rows": rows, "paired": data.get("paired")}


def write_report(results: dict[str, Any], out: Path, *, plots: bool = True) -> list[Path]:
    """Write results.json (meta, records, paired), per_prompt.jsonl, results.md and the plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    saved = {"meta": results["meta"], "records": results["records"]}
    if results.get("paired"):
        saved["paired"] = results["paired"]
    (out / "results.json").write_text(json.dumps(saved, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with (out / "per_prompt.jsonl").open("w", encoding="utf-8") as handle:
        for row in results["rows"]:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "results.md").write_text(markdown_report(results), encoding="utf-8")
    written = [out / "results.json", out / "per_prompt.jsonl", out / "results.md"]
    return written + (plot_all(results, out) if plots else [])
