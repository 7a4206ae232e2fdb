set -uo pipefail
export GIT_COMMIT=f26e93f
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/x2w/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD:$PWD/service:$PWD/eval HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false CTXCOMPRESS_HOME=/tmp/ctxc-home
echo "== lone profile"; timeout 90 python3 eval/device/profile_latency.py --kit .carry/prof --out $OUT/profile --methods hybrid --repeats 5 2>&1 | grep "^hybrid"
rm -f $OUT/profile/hybrid.txt
echo "== library + REST"; OUT=$OUT REST_LIBRARY_BATCHES=256 REST_LIBRARY_LIMIT=512 REST_RUNS=hybrid:10 REST_CLIENTS="1 16 128" REST_SECONDS=25 REST_REQUESTS=3000 REST_RUN_TIMEOUT=230 REST_EXTRA="--settle-s 5" bash eval/device/rest_bench.sh 2>&1 | grep -v -iE "warn" | tail -22
for f in $OUT/rest/*.log; do grep -v -E "Loading weights|it/s\]" $f | tail -30 > $f.tail; rm $f; done
find $OUT -type f | sort
