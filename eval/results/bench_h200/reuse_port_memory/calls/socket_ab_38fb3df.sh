# Run from the repository root on the lent GPU (carry .carry/x2w .carry/prof .carry/nq [.carry/ab] and this file).
set -uo pipefail
export GIT_COMMIT=38fb3df
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/x2w/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD:$PWD/service:$PWD/eval HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false CTXCOMPRESS_HOME=/tmp/ctxc-home
echo "== new profile"; python3 eval/device/profile_latency.py --kit .carry/prof --out $OUT/new/profile --methods hybrid --repeats 5 2>&1 | grep "^hybrid"
echo "== reuse_port"; OUT=$OUT/reuse REST_LIBRARY=0 REST_RUNS=hybrid:10 REST_CLIENTS="1 16 128" REST_SECONDS=15 bash eval/device/rest_bench.sh 2>&1 | grep -v -iE "warn" | tail -8
grep -iE "profile batch" $OUT/reuse/rest/hybrid-w10.log | head -3
echo "== shared"; CTXCOMPRESS_REUSE_PORT=false OUT=$OUT/shared REST_LIBRARY=0 REST_RUNS=hybrid:10 REST_CLIENTS="16 128" REST_SECONDS=15 bash eval/device/rest_bench.sh 2>&1 | grep -v -iE "warn" | tail -6
(cd .carry/ab/old && find . -type f) | while read -r f; do cp ".carry/ab/old/$f" "$f"; done
echo "== old profile"; python3 eval/device/profile_latency.py --kit .carry/prof --out $OUT/old/profile --methods hybrid --repeats 5 2>&1 | grep "^hybrid"
rm -f $OUT/old/profile/hybrid.txt $OUT/shared/rest/device.txt
for f in $OUT/*/rest/*.log; do grep -v -E "Loading weights|it/s\]" $f | tail -60 > $f.tail; rm $f; done
find $OUT -type f | sort
