# One call: the CUDA-graph tests (run_static_pass refactor), the encoder's static passes on CUDA (vectors and
# pass time, off vs on), and the lone-request profile of `hybrid` with encoder graphs off/auto, chunk cache off/on.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/x2w/*.whl .carry/pt/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD:$PWD/service:$PWD/eval HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false CTXCOMPRESS_HOME=/tmp/ctxc-home
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc; lscpu | grep "Model name"
echo "== GPU tests"
(export CTXCOMPRESS_MODELS=$(python3 -c "
import json, pathlib
from ctxcompress_eval.random_models import build_random_models
print(json.dumps(build_random_models(pathlib.Path('.carry/prof'), pathlib.Path('/tmp/ctxc-random'))))" 2>/dev/null)
timeout 150 python3 -m pytest -q -c /dev/null --rootdir . -p no:cacheprovider tests/unit_tests/test_cuda_graphs.py tests/unit_tests/test_attention_method.py tests/unit_tests/test_encoder_graphs.py 2>&1 | tail -4)
echo "== encoder graph check"
timeout 120 python3 eval/device/encoder_graph_check.py --kit .carry/prof --out $OUT/encoder_graphs.json 2>&1 | grep -v -iE "warn|Loading weights" | tail -12
for graphs in off auto; do for cache in 0 256; do
  echo "== profile encoder_graphs=$graphs cache=$cache"
  timeout 120 python3 eval/device/profile_latency.py --kit .carry/prof --out $OUT/profile_${graphs}_$cache --methods hybrid --repeats 5 --encoder-graphs $graphs --chunk-cache-mb $cache 2>&1 | grep "^hybrid"
done; done
rm -f $OUT/profile_off_256/hybrid.txt $OUT/profile_auto_256/hybrid.txt
find $OUT -type f | sort
