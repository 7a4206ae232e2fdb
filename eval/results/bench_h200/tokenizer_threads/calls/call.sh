# One call: the CUDA tests (graphed encoder included), then the tokenizers' own thread pool (Rust/rayon) bounded to a
# few threads per process against the serial default: lone-request profile and REST at 1/16/128 clients, 10 workers.
set -uo pipefail
export GIT_COMMIT=${GIT_COMMIT:-unknown}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/x2w/*.whl .carry/pt/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD:$PWD/service:$PWD/eval HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CTXCOMPRESS_HOME=/tmp/ctxc-home
lscpu | grep "Model name"
echo "== GPU tests"
(export TOKENIZERS_PARALLELISM=false CTXCOMPRESS_MODELS=$(python3 -c "
import json, pathlib
from ctxcompress_eval.random_models import build_random_models
print(json.dumps(build_random_models(pathlib.Path('.carry/prof'), pathlib.Path('/tmp/ctxc-random'))))" 2>/dev/null)
timeout 150 python3 -m pytest -q -rA -c /dev/null --rootdir . -p no:cacheprovider tests/unit_tests/test_cuda_graphs.py tests/unit_tests/test_attention_method.py tests/unit_tests/test_encoder_graphs.py 2>&1 | grep -E "cuda|passed|failed|Error" | tail -12)
for setting in false:0 true:2 true:4; do
  export TOKENIZERS_PARALLELISM=${setting%%:*}; [ "${setting##*:}" = 0 ] && unset RAYON_NUM_THREADS || export RAYON_NUM_THREADS=${setting##*:}
  echo "== profile TOKENIZERS_PARALLELISM=$TOKENIZERS_PARALLELISM RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-}"
  timeout 120 python3 eval/device/profile_latency.py --kit .carry/prof --out /tmp/profile --methods hybrid --repeats 5 2>&1 | grep "^hybrid"
done
for setting in false:0 true:2; do
  export TOKENIZERS_PARALLELISM=${setting%%:*}; [ "${setting##*:}" = 0 ] && unset RAYON_NUM_THREADS || export RAYON_NUM_THREADS=${setting##*:}
  echo "== REST TOKENIZERS_PARALLELISM=$TOKENIZERS_PARALLELISM RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-}"
  OUT=$OUT/${setting/:/_} REST_LIBRARY=0 REST_RUNS=hybrid:10 REST_CLIENTS="1 16 128" REST_SECONDS=20 REST_REQUESTS=3000 \
    REST_RUN_TIMEOUT=200 REST_EXTRA="--settle-s 5" bash eval/device/rest_bench.sh 2>&1 | grep -v -iE "warn" | tail -7
done
for f in $OUT/*/rest/*.log; do grep -v -E "Loading weights|it/s\]" $f | tail -30 > $f.tail; rm $f; done
find $OUT -type f | sort
