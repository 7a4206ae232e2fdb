#!/usr/bin/env bash
# Set up (idempotently) and run the whole test suite. CI calls exactly this (see README.md and .ci/run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
# The llmlingua 0.2.2 anchor's pinned venv (idempotent), so the eval harness's anchor test runs too.
bash "$ROOT/eval/anchor/setup_anchor.sh" >/dev/null
# The LiteLLM proxy's own pinned venv (idempotent), for the LiteLLM guardrail's test.
bash "$ROOT/scripts/setup_litellm.sh"
# Chromium from the OS packages for the playground's headless-browser test (skipped where it cannot be installed).
bash "$ROOT/scripts/install_browser.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
