#!/bin/sh
# Container entrypoint of the ctxcompress image.
#   ctxcompress-entrypoint [serve flags...]  check the baked models are there (never download), exec `ctxcompress serve`
#   ctxcompress-entrypoint --ready           exit 0 when the local service answers /readyz (the health check)
# Models it requires: CTXCOMPRESS_BAKED_MODELS (default: smollm2-135m minilm-l6, what the default methods load).
set -eu
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
export CTXCOMPRESS_HOST="${CTXCOMPRESS_HOST:-0.0.0.0}" CTXCOMPRESS_PORT="${CTXCOMPRESS_PORT:-8000}"

if [ "${1:-}" = "--ready" ]; then
    exec python3 -c 'import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=4)
except Exception as exc:
    sys.exit(f"not ready: {exc}")' "$CTXCOMPRESS_PORT"
fi

missing="$(ctxcompress models list --json | python3 -c 'import json, sys
prepared = {row["name"] for row in json.load(sys.stdin) if row["local_path"]}
print(" ".join(name for name in sys.argv[1].split() if name not in prepared))' "${CTXCOMPRESS_BAKED_MODELS:-smollm2-135m minilm-l6}")"
if [ -n "$missing" ]; then
    echo "ctxcompress-entrypoint: models not baked into the image: $missing (CTXCOMPRESS_HOME=${CTXCOMPRESS_HOME:-unset});" \
         "the image build runs 'ctxcompress models prepare'" >&2
    exit 78  # EX_CONFIG
fi
exec ctxcompress serve "$@"
