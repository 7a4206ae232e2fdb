# One call (session 19): the library bench with llmlingua 0.2.2 beside it (its pinned wheels carried in .carry/anc),
# 10 and 6 engine processes; the lone-request profile; REST at 1/16/128 clients with `serve --workers 10`.
# Carry: .carry/x2w .carry/prof .carry/nq .carry/anc. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
bench() {
  timeout "$1" python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
    --method hybrid --data .carry/nq/gold_at_0.jsonl.gz .carry/nq/gold_at_9.jsonl.gz --batch-sizes 256,512 --limit 1024 \
    --single-requests 20 --single-warmup 5 "${@:2}" > /tmp/bench.log 2>&1
  echo "exit $?"; grep -E "^\||llmlingua|single|prompts/s" /tmp/bench.log | tail -12
}
echo "== library, 10 processes, llmlingua 0.2.2 beside it"
bench 330 --processes 10 --anchor-python "$ANCHOR_PYTHON" --anchor-limit 10 --out $OUT/library-p10
echo "== library, 6 processes"
bench 150 --processes 6 --out $OUT/library-p6
echo "== lone request profile"
timeout 90 python3 eval/device/profile_latency.py --kit .carry/prof --out /tmp/profile --methods hybrid --repeats 5 2>&1 | grep "^hybrid"
cp /tmp/profile/summary.json $OUT/profile-summary.json 2>/dev/null
echo "== REST serve --workers 10"
OUT=/tmp/rest REST_LIBRARY=0 REST_RUNS=hybrid:10 REST_CLIENTS="1 16 128" REST_SECONDS=20 REST_REQUESTS=3000 \
  REST_RUN_TIMEOUT=200 REST_EXTRA="--settle-s 5" bash eval/device/rest_bench.sh 2>&1 | grep -v -iE "warn" | tail -7
cp /tmp/rest/rest/hybrid-w10.json $OUT/ 2>/dev/null
find $OUT -name "*.jsonl" -delete; find $OUT -type f | sort
