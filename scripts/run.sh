#!/usr/bin/env bash
# Set up (idempotently) and run the main job: the REST service (`ctxcompress serve`) on the embedded default
# models, offline. Defaults: http://127.0.0.1:8000, CTXCOMPRESS_DEVICE=auto (every GPU when present, else CPU).
# Flags pass through, e.g. `./scripts/run.sh --port 9000 --device cpu`; settings: README "REST service".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export CTXCOMPRESS_DEVICE="${CTXCOMPRESS_DEVICE:-auto}"
exec .venv/bin/ctxcompress serve "$@"
