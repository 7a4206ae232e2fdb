"""The sentence encoder with and without static-shape CUDA graphs (``engines/encoder_graphs.py``) on one GPU:
the same span vectors, and the time of one request's encoder pass (``span_embeddings`` of its 20 documents with
sentence spans, as ``hybrid`` asks for them). Random weights from the real all-MiniLM-L6-v2 config (``--kit``), in
float16 as the service runs it; one encoder per setting, same seed, same weights.

    python3 eval/device/encoder_graph_check.py --kit .carry/prof --out $OUT/encoder_graphs.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, default=Path(".carry/prof"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("encoder_graphs.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import numpy as np
    import torch
    from ctxcompress_eval.random_models import build_random_models

    from ctxcompress.engines.encoder import SentenceEncoder
    from ctxcompress.text.sentences import split_sentences_with_spans

    path = build_random_models(args.kit, Path("/tmp/ctxc-random"))["minilm-l6"]["path"]
    prompts = [json.loads(line) for line in (args.kit / "prompts.jsonl").open()]
    requests = []
    for prompt in prompts:
        texts = list(prompt["documents"])
        spans = [split_sentences_with_spans(text) for text in texts]
        requests.append((texts, spans))
    report: dict[str, object] = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"}
    vectors: dict[str, list[np.ndarray]] = {}
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    static = "auto" if cuda else "on"  # on CPU: the static shapes run eagerly (a smoke test of this script)
    for setting in ("off", static):
        dtype = "float16" if cuda else "float32"
        encoder = SentenceEncoder.from_pretrained(path, device=args.device, dtype=dtype, graphs=setting)
        for texts, spans in requests[:2]:  # warm-up: kernels chosen, graphs recorded
            encoder.span_embeddings(texts, spans)
        times, out = [], []
        for _ in range(args.repeats):
            for texts, spans in requests:
                sync()
                started = time.perf_counter()
                result = encoder.span_embeddings(texts, spans)
                times.append(time.perf_counter() - started)
                out.append(np.concatenate([r.spans for r in result]))
        vectors[setting] = out
        passes = encoder.static_passes
        report[setting] = {
            "p50_ms": round(statistics.median(times) * 1000, 2),
            "graphs_recorded": passes.captured if passes is not None else 0,
        }
        print(setting, report[setting], flush=True)
    differences = [float(np.abs(a - b).max()) for a, b in zip(vectors["off"], vectors[static], strict=True)]
    cosines = [float(np.min(np.sum(a * b, axis=1))) for a, b in zip(vectors["off"], vectors[static], strict=True)]
    report["max_abs_difference"] = max(differences)
    report["min_cosine"] = min(cosines)
    print({k: report[k] for k in ("max_abs_difference", "min_cosine")})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
