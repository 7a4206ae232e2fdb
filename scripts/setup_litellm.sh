#!/usr/bin/env bash
# Idempotent: the venv in which the LiteLLM guardrail's test runs a real LiteLLM proxy: ctxcompress's thin install
# (no torch) + litellm[proxy], every package at the locked version (requirements/litellm-lock.txt; LiteLLM's
# dependency set conflicts with the main venv's, so it lives apart, like the llmlingua anchor's).
# Usage: bash scripts/setup_litellm.sh     (venv path: $LITELLM_VENV, default <repo>/.venv-litellm)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LITELLM_VENV:-$ROOT/.venv-litellm}"
LOCK="$ROOT/requirements/litellm-lock.txt"
STAMP="$VENV/.ctxcompress-setup"
want="$(cat "$ROOT/pyproject.toml" "$LOCK" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"

if [[ "$(cat "$STAMP" 2>/dev/null || true)" == "$want" && -x "$VENV/bin/litellm" ]]; then
  exit 0
fi
echo "[setup] LiteLLM venv at $VENV" >&2
[[ -x "$VENV/bin/python" ]] || "${PYTHON:-python3}" -m venv "$VENV"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install -q -c "$LOCK" -e "$ROOT[litellm]"
LITELLM_LOCAL_MODEL_COST_MAP=True "$VENV/bin/python" -c "import litellm_ctxcompress, sys; assert 'torch' not in sys.modules"
echo "$want" > "$STAMP"
