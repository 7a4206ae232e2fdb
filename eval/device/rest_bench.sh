#!/usr/bin/env bash
# The service at GPU speed (issue 22): library and REST throughput of one lent H200 in one call, random weights
# from the real SmolLM2-135M and all-MiniLM-L6-v2 configs (.carry/prof), NQ 20-document rows (.carry/nq).
# Call: carry [".carry/x2w", ".carry/prof", ".carry/nq"], command `bash eval/device/rest_bench.sh`; results in
# $OUT/rest/. Runs (REST_RUNS, "method:workers" or "method:workers@devices" each, e.g. "hybrid:12@cuda:0,cuda:1";
# default below) get ~2.5 min each. REST_LIBRARY_GPUS="1 2" runs the library bench on one GPU (6 processes) and on
# two (12 processes, `--gpus 2`).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/x2w/*.whl 2>&1 | tail -2
export PYTHONPATH="/tmp/site:$PWD:$PWD/service:$PWD/eval" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}" CTXCOMPRESS_HOME=/tmp/ctxc-home
out="${OUT:-/tmp/out}/rest"; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/device.txt"
nproc | tee -a "$out/device.txt"
git_commit=${GIT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
echo "commit $git_commit" | tee -a "$out/device.txt"
CTXCOMPRESS_MODELS=$(python3 -c "
import json, pathlib
from ctxcompress_eval.random_models import build_random_models
print(json.dumps(build_random_models(pathlib.Path('.carry/prof'), pathlib.Path('/tmp/ctxc-random'))))")
export CTXCOMPRESS_MODELS
data=".carry/nq/gold_at_9.jsonl.gz"
if [ "${REST_LIBRARY:-1}" = 1 ]; then
  for method in ${REST_LIBRARY_METHODS:-hybrid}; do
    for gpus in ${REST_LIBRARY_GPUS:-1}; do
      name="library-$method"; [ "$gpus" = 1 ] || name="library-$method-g$gpus"
      timeout 240 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
        --method "$method" --data .carry/nq/gold_at_0.jsonl.gz "$data" --batch-sizes "${REST_LIBRARY_BATCHES:-64,256}" \
        --limit "${REST_LIBRARY_LIMIT:-512}" --processes $((gpus * ${REST_LIBRARY_PROCESSES:-6})) --gpus "$gpus" --single-requests 20 \
        --single-warmup 5 ${REST_LIBRARY_EXTRA:-} --out "$out/$name" >"$out/$name.log" 2>&1
      tail -12 "$out/$name.log"
    done
  done
fi
for run in ${REST_RUNS:-hybrid:1 hybrid:6 longllmlingua:6}; do
  device=cuda; case "$run" in *@*) device=${run#*@}; run=${run%%@*} ;; esac
  method=${run%%:*}; workers=${run##*:}
  name="$method-w$workers"; [ "$device" = cuda ] || name="$name-$(echo "$device" | tr -cd '0-9')"
  library=""; [ -f "$out/library-$method/bench.json" ] && library="--library-json $out/library-$method/bench.json"
  timeout "${REST_RUN_TIMEOUT:-170}" python3 scripts/load_test.py --workers "$workers" --random-kit .carry/prof \
    --device "$device" --method "$method" --docs 20 --rate 0.25 --data "$data" --concurrency ${REST_CLIENTS:-1 16 128} \
    --requests "${REST_REQUESTS:-1500}" --max-seconds "${REST_SECONDS:-25}" --warmup 64 $library \
    ${REST_EXTRA:-} --out "$out/$name.json" >"$out/$name.log" 2>&1
  echo "== $method workers=$workers device=$device (exit $?)"
  grep -v -E "Loading weights|it/s\]|warn" "$out/$name.log" | tail -8
done
