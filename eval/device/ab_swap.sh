#!/usr/bin/env bash
# A/B of a code change on the lent GPU in one call: side "new" is the working tree, side "old" the same tree with
# the files under $AB_OLD (default .carry/ab/old, laid out by repository path) copied over it. Per side: the lone
# request profile (eval/device/profile_latency.py, chunk cache off) and REST throughput of `serve --workers 6`
# (rest_bench.sh; AB_CLIENTS, default "16 128"; AB_LIBRARY=1 adds the library bench to the new side; AB_PROFILE=0
# skips the profile, e.g. for a serving-only change).
# Make the old side here, e.g.:  mkdir -p .carry/ab/old/ctxcompress/methods &&
#   git show HEAD~1:ctxcompress/methods/hybrid.py > .carry/ab/old/ctxcompress/methods/hybrid.py
# Call: carry [".carry/x2w", ".carry/prof", ".carry/nq", ".carry/ab"], command `GIT_COMMIT=... bash eval/device/ab_swap.sh`.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/x2w/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD:$PWD/service:$PWD/eval HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false CTXCOMPRESS_HOME=/tmp/ctxc-home
old=${AB_OLD:-.carry/ab/old}; base=${OUT:-/tmp/out}; commit=${GIT_COMMIT:-unknown}
for side in new old; do
  if [ $side = old ]; then (cd "$old" && find . -type f) | while read -r f; do cp "$old/$f" "$f"; done; fi
  mkdir -p "$base/$side"; echo "== $side"
  if [ "${AB_PROFILE:-1}" = 1 ]; then
    python3 eval/device/profile_latency.py --kit .carry/prof --out "$base/$side/profile" --methods hybrid --repeats 5 \
      2>&1 | grep "^hybrid"
  fi
  library=0; [ $side = new ] && library=${AB_LIBRARY:-0}
  OUT="$base/$side" REST_LIBRARY=$library REST_LIBRARY_BATCHES=256 REST_RUNS="hybrid:6" \
    REST_CLIENTS="${AB_CLIENTS:-16 128}" REST_SECONDS=15 GIT_COMMIT="$commit-$side" bash eval/device/rest_bench.sh \
    2>&1 | grep -v -E "Warn|warn" | tail -8
  # at most 8 files come back from a call: keep the summaries
  find "$base/$side" \( -name "*.txt" -o -name "*.log" \) -delete
done
