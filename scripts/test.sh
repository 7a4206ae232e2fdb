#!/usr/bin/env bash
# Set up (idempotently) and run the whole test suite. CI calls exactly this (see README.md and .ci/run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
