#!/usr/bin/env bash
# bash eval/device/run_eval.sh NAME [ctxcompress eval arguments...]     (after `source eval/device/setup.sh`)
#
# Runs `python3 -m ctxcompress.cli eval --data-dir $CTXCOMPRESS_DATA --device cuda --out $CTXC_ROOT/ctxc-run/NAME ARGS`
# ($CTXCOMPRESS_DATA is set by setup.sh; ARGS may override --device), stopped with SIGINT in time for the call's
# limit ($CTXC_CALL_LIMIT_S, default 600 s from setup.sh's start, minus $CTXC_PACK_MARGIN_S, default 45 s), then copies
# the results to $OUT/NAME/ (8 files at most: results.json, results.md, per_prompt.jsonl, the plots, cache.tgz,
# eval.log). The output folder stays in /tmp, so the same command in the next call (made within 30 s, while the
# machine is warm) resumes from its cache; exit 124 says it stopped early.
set -uo pipefail

name="${1:?usage: run_eval.sh NAME [ctxcompress eval args...]}"
shift
: "${CTXC_ROOT:?source eval/device/setup.sh first}"
run="$CTXC_ROOT/ctxc-run/$name"
out="${OUT:-$run/out}/$name"
limit="${CTXC_CALL_LIMIT_S:-600}"
margin="${CTXC_PACK_MARGIN_S:-45}"
mkdir -p "$run" "$out"

fix_cache() {  # a run stopped mid-write can leave a torn last line; the cache loader would choke on it
    "$CTXC_PY" - "$run/cache" <<'PY'
import json, sys
from pathlib import Path
for path in Path(sys.argv[1]).rglob("*.jsonl"):
    lines = path.read_text(encoding="utf-8").splitlines()
    good = []
    for line in lines:
        try:
            json.loads(line)
            good.append(line)
        except ValueError:
            pass
    if len(good) != len(lines):
        path.write_text("".join(l + "\n" for l in good), encoding="utf-8")
        print(f"[run_eval] dropped {len(lines) - len(good)} torn line(s) from {path}", file=sys.stderr)
PY
}

left=$((CTXC_T0 + limit - margin - $(date +%s)))
if ((left < 30)); then
    echo "run_eval.sh: only ${left}s left in this call; run it again in the next call" >&2
    exit 124
fi
rm -f "$run/results.json" "$run/results.md" "$run/per_prompt.jsonl" "$run"/*.png
[[ -d "$run/cache" ]] && fix_cache
echo "=== $(date -u +%FT%TZ) run_eval.sh $name (eval stops after ${left}s): $*" | tee -a "$run/eval.log" >&2
TQDM_DISABLE=1 timeout -s INT -k 20 "$left" "$CTXC_PY" -m ctxcompress.cli eval \
    --data-dir "$CTXCOMPRESS_DATA" --device cuda --out "$run" "$@" 2>&1 | tee -a "$run/eval.log"
rc=${PIPESTATUS[0]}
[[ -d "$run/cache" ]] && fix_cache

files=(results.json results.md per_prompt.jsonl eval.log)
for f in "${files[@]}" "$run"/*.png; do
    f="$(basename "$f")"
    [[ -f "$run/$f" ]] && cp -f "$run/$f" "$out/"
done
[[ -d "$run/cache" ]] && tar -czf "$out/cache.tgz" -C "$run" cache
if ((rc == 124 || rc == 130 || rc == 137)); then
    echo "run_eval.sh: stopped at the call's time limit (exit $rc); the cache is kept: run the same command again" \
        "in the next call (within 30 s) to resume" >&2
    rc=124
elif ((rc != 0)); then
    echo "run_eval.sh: ctxcompress eval exited with $rc" >&2
fi
echo "[run_eval] $out: $(ls "$out" | tr '\n' ' ')" >&2
exit "$rc"
