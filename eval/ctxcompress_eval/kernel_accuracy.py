"""How far are the bf16 scoring paths from fp32? Per-token NLL of NQ 20-doc prompts, torch vs Triton kernels.

One model (same seed, so the same weights: random with ``--random-weights``) scores the same token sequences
three ways: fp32 with torch kernels (the reference), bf16 with torch kernels, bf16 with Triton kernels. For each
bf16 path: mean and max absolute NLL error against fp32, and the share of each sequence's top-``rate`` tokens
by NLL that match the reference's (what token pruning keeps). With random weights NLLs barely differ from
token to token, so the kept set is decided by rounding; a real checkpoint's scores spread over several nats.

    python eval/ctxcompress_eval/kernel_accuracy.py --device cuda --random-weights --out kernel_accuracy.json
"""

from __future__ import annotations

import argparse
import copy

import numpy as np

from ctxcompress_eval import bench


def _top_share(reference: np.ndarray, other: np.ndarray, rate: float) -> float:
    keep = max(1, int(rate * len(reference)))
    top_reference = set(np.argsort(-reference, kind="stable")[:keep].tolist())
    top_other = set(np.argsort(-other, kind="stable")[:keep].tolist())
    return len(top_reference & top_other) / keep


def run(args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from ctxcompress.engines.device import resolve_device
    from ctxcompress.engines.scorer import CausalLMScorer
    from ctxcompress.models import default_registry

    device = resolve_device(args.device)
    model_dir = args.model_dir or default_registry().resolve("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if args.random_weights:
        torch.manual_seed(0)
        reference_model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    else:
        reference_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    reference_model = reference_model.to(device).eval()
    bf16_models = [copy.deepcopy(reference_model).to(torch.bfloat16) for _ in range(2)]  # fusing re-points weights
    paths = bench.data_paths(args.data)
    texts = [
        " ".join(bench._request(row, "longllmlingua", args.rate)["documents"])
        for row in bench._rows(paths, args.prompts)
    ]
    scorers = {
        "fp32_torch": CausalLMScorer(reference_model, tokenizer, kernels="torch", graphs="off"),
        "bf16_torch": CausalLMScorer(bf16_models[0], tokenizer, kernels="torch", graphs="off"),
        "bf16_triton": CausalLMScorer(bf16_models[1], tokenizer, kernels="triton", graphs="off"),
    }
    sequences = [ids[: args.max_tokens] for ids, _ in scorers["fp32_torch"].encode_batch(texts)]
    nll = {name: scorer.token_nll(sequences) for name, scorer in scorers.items()}
    report: dict = {
        "weights": "random-initialised" if args.random_weights else "checkpoint",
        "device": str(device),
        "sequences": len(sequences),
        "tokens": int(sum(len(s) for s in sequences)),
        "rate": args.rate,
    }
    for name in ("bf16_torch", "bf16_triton"):
        errors = np.concatenate([np.abs(a - b)[1:] for a, b in zip(nll["fp32_torch"], nll[name], strict=True)])
        shares = [_top_share(a[1:], b[1:], args.rate) for a, b in zip(nll["fp32_torch"], nll[name], strict=True)]
        report[f"{name}_nll_abs_error_mean"] = float(errors.mean())
        report[f"{name}_nll_abs_error_max"] = float(errors.max())
        report[f"{name}_top_share_mean"] = float(np.mean(shares))
    spread = np.concatenate([a[1:] for a in nll["fp32_torch"]])
    report["fp32_nll_std"] = float(spread.std())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--data", nargs="*", default=None)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--rate", type=float, default=0.25)
    parser.add_argument("--out", default="kernel_accuracy.json")
    args = parser.parse_args(argv)
    bench.emit_report(run(args), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
