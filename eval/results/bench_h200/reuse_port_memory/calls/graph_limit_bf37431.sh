# Run from the repository root on the lent GPU (carry .carry/x2w .carry/prof .carry/nq [.carry/ab] and this file).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/x2w/*.whl .carry/pt/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD:$PWD/service:$PWD/eval HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false CTXCOMPRESS_HOME=/tmp/ctxc-home
export CTXCOMPRESS_MODELS=$(python3 -c "
import json, pathlib
from ctxcompress_eval.random_models import build_random_models
print(json.dumps(build_random_models(pathlib.Path('.carry/prof'), pathlib.Path('/tmp/ctxc-random'))))" 2>/dev/null)
timeout 100 python3 -m pytest -q -c /dev/null --rootdir . -p no:cacheprovider tests/unit_tests/test_attention_method.py tests/unit_tests/test_cuda_graphs.py 2>&1 | tail -2
timeout 150 python3 eval/device/memory_profile.py --kit .carry/prof --data .carry/nq/gold_at_9.jsonl.gz --batches 150 --configs expandable --out $OUT/memory 2>&1 | grep -v -E "Loading weights|warn"
OUT=$OUT/reuse REST_LIBRARY=0 REST_RUNS=hybrid:10 REST_CLIENTS="1 16 128" REST_SECONDS=25 REST_REQUESTS=3000 REST_RUN_TIMEOUT=230 bash eval/device/rest_bench.sh 2>&1 | grep -v -iE "warn" | tail -6
for f in $OUT/*/rest/*.log; do grep -v -E "Loading weights|it/s\]" $f | tail -30 > $f.tail; rm $f; done
