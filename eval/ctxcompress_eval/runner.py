"""The evaluation run: datasets × systems × rates → cached outputs → per-prompt rows → aggregates.

A *system* is a ctxcompress method (batched through ``Compressor.compress_batch``), a baseline, or an anchor mode.
Outputs are cached per (dataset, system, rate) under ``<out>/cache``; a re-run computes only what is missing
(or failed), then re-derives every metric and report from the cache: per-prompt rows, aggregates per
(dataset, system, rate) with the NQ loss breakdown, and the paired comparison against a reference system.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from ctxcompress import Compressor
from ctxcompress.errors import CtxCompressError, InvalidInput
from ctxcompress.methods.base import method_names
from ctxcompress.models import default_registry
from ctxcompress_eval.anchor import ANCHOR_MODES, AnchorRunner, anchor_info, attribute_documents
from ctxcompress_eval.baselines import BASELINES, make_baseline
from ctxcompress_eval.datasets import Example
from ctxcompress_eval.metrics import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    PAIRED_REFERENCE,
    aggregate,
    contains_answer,
    loss_breakdown,
    loss_cause,
    paired_comparison,
    prompt_metrics,
    short_answers,
)
from ctxcompress_eval.outputs import Output, OutputCache, from_result
from ctxcompress_eval.reader import Reader

__all__ = [
    "EvalConfig",
    "MethodSystem",
    "System",
    "evaluate",
    "expand_methods",
    "log",
    "method_variant",
    "paired_section",
]

SCORER_MODEL = "smollm2-135m"
ENCODER_MODEL = "minilm-l6"
Progress = Callable[[int], None]


def log(message: str) -> None:
    print(f"[eval] {message}", file=sys.stderr, flush=True)


class System(Protocol):
    name: str

    def run(self, examples: list[Example], rate: float, progress: Progress | None = None) -> list[Output]: ...


@dataclass
class EvalConfig:
    """What to run; see ``ctxcompress eval --help`` for the meaning of each field."""

    methods: list[str]
    rates: list[float]
    out: Path
    device: str = "auto"
    batch_size: int = 1
    seed: int = 0
    fresh: bool = False
    anchor_venv: Path | None = None
    reader: Reader | None = None
    paired_reference: str | None = None
    extra_meta: dict[str, Any] = field(default_factory=dict)


def method_variant(name: str) -> tuple[str, dict[str, Any]]:
    """``method+key=value+...`` → ``(method, options)``: a method with options, compared as a system of its own
    (e.g. ``hybrid+scorer=gemma-3-270m+signals=all``). Values are read as JSON where they parse, else as text;
    ``key=@file.json`` reads the value from a JSON file (its ``key`` entry when it holds an object with one, e.g.
    ``attention+layer_weights=@attention_options.json`` from ``ctxcompress calibrate-attention``)."""
    method, *pairs = name.split("+")
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"method variant {name!r}: write method+key=value", field="methods")
        if value.startswith("@"):
            loaded = json.loads(Path(value[1:]).read_text(encoding="utf-8"))
            options[key] = loaded[key] if isinstance(loaded, dict) and key in loaded else loaded
            continue
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return method, options


class MethodSystem:
    """A registered ctxcompress method (or a variant with options, :func:`method_variant`); ``batch_size``
    requests per ``compress_batch`` call."""

    kind = "ctxcompress"

    def __init__(self, name: str, compressor: Compressor, batch_size: int = 1) -> None:
        self.name = name
        self.method, self.options = method_variant(name)
        self.compressor = compressor
        self.batch_size = max(1, batch_size)

    def request(self, example: Example, rate: float) -> dict[str, Any]:
        request = example.request(self.method, rate)
        return {**request, "options": self.options} if self.options else request

    def run(self, examples: list[Example], rate: float, progress: Progress | None = None) -> list[Output]:
        outputs: list[Output] = []
        for start in range(0, len(examples), self.batch_size):
            chunk = examples[start : start + self.batch_size]
            started = time.perf_counter()
            results = self.compressor.compress_batch([self.request(ex, rate) for ex in chunk], return_exceptions=True)
            per_prompt = (time.perf_counter() - started) * 1000 / len(chunk)
            for ex, result in zip(chunk, results, strict=True):
                if isinstance(result, CtxCompressError):
                    outputs.append(Output(id=ex.id, method=self.name, rate=rate, error=result.message))
                else:
                    outputs.append(from_result(ex.id, self.name, rate, result, per_prompt))
            if progress:
                progress(len(chunk))
        return outputs


class BaselineSystem:
    kind = "baseline"

    def __init__(self, name: str, compressor: Compressor, seed: int) -> None:
        self.name = name
        self.baseline = make_baseline(name, compressor.pool, seed=seed)

    def run(self, examples: list[Example], rate: float, progress: Progress | None = None) -> list[Output]:
        outputs = []
        for ex in examples:
            outputs += self.baseline.run([ex], rate)
            if progress:
                progress(1)
        return outputs


def expand_methods(spec: Sequence[str]) -> list[str]:
    """Method names with the aliases ``all``, ``methods``, ``baselines`` and ``anchor`` expanded."""
    aliases = {
        "methods": method_names(),
        "baselines": list(BASELINES),
        "anchor": list(ANCHOR_MODES),
    }
    aliases["all"] = aliases["baselines"] + aliases["methods"] + aliases["anchor"]
    names: list[str] = []
    for item in spec:
        for name in aliases.get(item, [item]):
            if name not in names:
                names.append(name)
    valid = set(aliases["all"])
    unknown = [n for n in names if n not in valid and method_variant(n)[0] not in aliases["methods"]]
    if unknown:
        raise InvalidInput(
            f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}, "
            "or the aliases all, methods, baselines, anchor",
            field="methods",
        )
    return names


def build_systems(config: EvalConfig, compressor: Compressor) -> tuple[list[Any], dict[str, str]]:
    """The runnable systems and, for the others, why they are skipped."""
    systems: list[Any] = []
    skipped: dict[str, str] = {}
    registry = default_registry()
    for name in config.methods:
        if name in BASELINES:
            systems.append(BaselineSystem(name, compressor, config.seed))
        elif name in ANCHOR_MODES:
            runner = AnchorRunner(
                name, ANCHOR_MODES[name], "", device=str(compressor.pool.device), venv=config.anchor_venv
            )
            if not runner.ready:
                skipped[name] = f"anchor venv {runner.venv} not set up (bash eval/anchor/setup_anchor.sh)"
                continue
            runner.model_dir = registry.resolve(SCORER_MODEL)
            systems.append(runner)
        elif name == "llmlingua2" and not registry.names("token-classifier"):
            skipped[name] = "no token-classifier model configured (set one in $CTXCOMPRESS_MODELS)"
        else:
            systems.append(MethodSystem(name, compressor, config.batch_size))
    return systems, skipped


def _answers(example: Example) -> list[str]:
    return short_answers(example.answers) if example.dataset == "longbench" else list(example.answers)


def _gold_kept(example: Example, output: Output) -> bool | None:
    """Whether the gold document is among the kept ones (None: unknown, e.g. unattributed anchor text)."""
    kept = {i for i, _ in output.kept}
    if example.gold_index in kept:
        return True
    return None if output.kept_source == "none" or -1 in kept else False


def _loss_fields(
    example: Example, gold: int, output: Output, row: dict[str, Any], answers: list[str]
) -> dict[str, Any]:
    """NQ: answer in the full context, gold document kept, and the cause of a lost answer."""
    in_full = contains_answer("\n\n".join(example.documents), answers)
    gold_kept = _gold_kept(example, output)
    cause = loss_cause(
        answer_in_full=in_full,
        answer_retained=bool(row["answer_retained"]),
        gold_kept=gold_kept,
        answer_in_gold=contains_answer(example.documents[gold], answers),
        gold_answer_retained=bool(row["gold_answer_retained"]),
    )
    return {"answer_in_full": in_full, "gold_kept": gold_kept, "loss": cause}


def prompt_row(example: Example, output: Output) -> dict[str, Any]:
    """Per-prompt metrics row (no prompt text)."""
    row: dict[str, Any] = {
        "id": example.id,
        "dataset": example.dataset,
        "method": output.method,
        "rate": output.rate,
        "position": example.position,
        "task": example.meta.get("task"),
        "error": output.error,
    }
    if output.error:
        return row
    answers = _answers(example)
    gold_text = output.kept_text(example.gold_index) if example.gold_index is not None else None
    row.update(
        prompt_metrics(
            context=output.context,
            gold_text=gold_text,
            answers=answers,
            gold_index=example.gold_index,
            ranking=output.ranking,
            origin_tokens=output.origin_tokens,
            compressed_tokens=output.compressed_tokens,
            target_tokens=output.target_tokens,
        )
    )
    row.update(
        origin_tokens=output.origin_tokens,
        compressed_tokens=output.compressed_tokens,
        target_tokens=output.target_tokens,
        latency_ms=output.latency_ms,
        kept_source=output.kept_source,
    )
    if example.gold_index is not None and answers:
        row.update(_loss_fields(example, example.gold_index, output, row, answers))
    if demo_answers := example.meta.get("demo_answers"):
        row["demo_conclusions_kept"] = sum(contains_answer(output.context, [a]) for a in demo_answers) / len(
            demo_answers
        )
    if output.kept_source == "index" and example.gold_index is not None and answers and output.kept:
        # Check the anchor's text-to-document attribution where the truth is known.
        pieces = attribute_documents(output.context, example.documents)
        attributed = "\n".join(t for i, t in pieces if i == example.gold_index)
        row["attribution_agrees"] = contains_answer(attributed, answers) == row["gold_answer_retained"]
    return row


def _group_aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    agg = aggregate(rows)
    ok = [r for r in rows if not r.get("error")]
    demo = [r["demo_conclusions_kept"] for r in ok if "demo_conclusions_kept" in r]
    if demo:
        agg["demo_conclusion_retention"] = round(sum(demo) / len(demo), 4)
    checks = [r["attribution_agrees"] for r in ok if "attribution_agrees" in r]
    if checks:
        agg["attribution_agreement"] = round(sum(checks) / len(checks), 4)
    return agg


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("ctxcompress", "torch", "transformers", "sentence-transformers", "tiktoken", "rank-bm25"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def run_metadata(config: EvalConfig, compressor: Compressor, skipped: dict[str, str]) -> dict[str, Any]:
    import torch

    device = compressor.pool.device
    commit = os.environ.get("CTXCOMPRESS_GIT_COMMIT")
    try:
        commit = (
            commit
            or subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parent,
                timeout=10,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "ctxcompress eval " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["eval"] else sys.argv[1:]),
        "git_commit": commit,
        "machine": {
            "host": platform.node(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        },
        "device": str(device),
        "models": {"scorer": SCORER_MODEL, "encoder (minilm baseline)": ENCODER_MODEL},
        "versions": _versions(),
        "anchor": anchor_info(config.anchor_venv or AnchorRunner("", "", "").venv),
        "rates": config.rates,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "latency_note": "latency_ms is per prompt: a batch's wall time divided by its size (batch_size above), "
        "after one untimed warm-up prompt per system (model loading excluded); the anchor's is "
        "llmlingua's compress_prompt wall time per prompt (model load excluded)",
        "skipped": skipped,
        **config.extra_meta,
    }


def _rates_for(system: Any, rates: list[float]) -> list[float]:
    return [1.0] if getattr(system, "name", "") == "none" else rates


def evaluate(
    datasets: dict[str, list[Example]], config: EvalConfig, compressor: Compressor | None = None
) -> dict[str, Any]:
    """Run (or resume) every dataset × system × rate; returns ``{"meta", "records", "rows"}``."""
    compressor = compressor or Compressor(device=config.device)
    systems, skipped = build_systems(config, compressor)
    for name, reason in skipped.items():
        log(f"skipping {name}: {reason}")
    rows: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for dataset, examples in datasets.items():
        by_id = {ex.id: ex for ex in examples}
        for system in systems:
            for rate in _rates_for(system, config.rates):
                outputs = _run_cached(system, dataset, examples, rate, config)
                if outputs is None:
                    skipped[f"{system.name}@{dataset}"] = "failed; see the log"
                    continue
                if config.reader is not None:
                    config.reader.judge(dataset, system.name, rate, outputs, by_id, config.out)
                group = [prompt_row(by_id[o.id], o) for o in outputs]
                if config.reader is not None:
                    for row, out in zip(group, outputs, strict=True):
                        row["reader_correct"] = out.extra.get("reader_correct")
                rows += group
                record = {
                    "dataset": dataset,
                    "method": system.name,
                    "kind": getattr(system, "kind", "anchor"),
                    "rate": rate,
                    **_group_aggregate(group),
                }
                if breakdown := loss_breakdown(group):
                    record["loss_breakdown"] = breakdown
                positions = sorted({r["position"] for r in group if r["position"] is not None})
                if positions:
                    record["by_position"] = {
                        str(p): _group_aggregate([r for r in group if r["position"] == p]) for p in positions
                    }
                records.append(record)
                log(
                    f"{dataset} {system.name} rate={rate:g}: n={record['n']} errors={record['n_errors']} "
                    f"ratio={record['ratio']} answer_retention={record['answer_retention']} "
                    f"latency_p50={record['latency_ms_p50']}ms"
                )
    meta = run_metadata(config, compressor, skipped)
    return {"meta": meta, "records": records, "rows": rows, "paired": paired_section(rows, config.paired_reference)}


def paired_section(rows: list[dict[str, Any]], reference: str | None = None) -> dict[str, Any] | None:
    """Every system against ``reference`` (default ``anchor-longllmlingua``) on the same prompts; None if absent."""
    reference = reference or PAIRED_REFERENCE
    if not any(r["method"] == reference for r in rows):
        log(f"no paired comparison: {reference} is not in this run (--paired-reference NAME)")
        return None
    return {
        "reference": reference,
        "metric": "answer_retained",
        "resamples": BOOTSTRAP_RESAMPLES,
        "seed": BOOTSTRAP_SEED,
        "interval": "95% percentile bootstrap of the mean paired difference (example ids resampled)",
        "comparisons": paired_comparison(rows, reference),
    }


def _run_cached(
    system: Any, dataset: str, examples: list[Example], rate: float, config: EvalConfig
) -> list[Output] | None:
    cache = OutputCache(config.out, dataset, system.name, rate)
    if config.fresh:
        cache.clear()
    done = {k: v for k, v in cache.load().items() if not v.error}
    pending = [ex for ex in examples if ex.id not in done]
    log(f"{dataset} {system.name} rate={rate:g}: {len(examples) - len(pending)} cached, {len(pending)} to run")
    chunk = 25 if isinstance(system, AnchorRunner) else 8
    if pending and not isinstance(system, AnchorRunner) and not getattr(system, "warmed", False):
        try:  # load models before timing (the anchor's runner times compress_prompt after its load)
            system.run(pending[:1], rate)
        except CtxCompressError:
            pass
        system.warmed = True
    with tqdm(
        total=len(examples),
        initial=len(examples) - len(pending),
        desc=f"{dataset} {system.name} {rate:g}",
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    ) as bar:
        for start in range(0, len(pending), chunk):
            batch = pending[start : start + chunk]
            try:
                outputs = system.run(batch, rate, progress=bar.update)
            except CtxCompressError as exc:
                log(f"{dataset} {system.name} rate={rate:g} failed: {exc.message}")
                return None
            cache.append(outputs)
            done.update({o.id: o for o in outputs})
    return [done[ex.id] for ex in examples if ex.id in done] + [
        Output(id=ex.id, method=system.name, rate=rate, error="no output") for ex in examples if ex.id not in done
    ]
