#!/usr/bin/env bash
# Set up (idempotently) and run the main job on the embedded default models.
# Until the REST service exists this compresses a real NQ 20-document sample with LongLLMLingua at rate 0.25.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python scripts/nq_sample.py | exec .venv/bin/ctxcompress compress "$@"
