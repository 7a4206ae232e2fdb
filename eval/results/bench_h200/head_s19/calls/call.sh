# One call (session 19, the session's code): lone-request profile; library bench (10 processes) with llmlingua 0.2.2
# beside it (its pinned wheels carried in .carry/anc); REST `serve --workers 10` at 1/16/128 clients and
# `--workers 13` at 16/128 (one torch thread per worker leaves host cores for more workers?).
# Carry: .carry/x2w .carry/prof .carry/nq .carry/anc. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
echo "== lone request profile"
timeout 80 python3 eval/device/profile_latency.py --kit .carry/prof --out /tmp/profile --methods hybrid --repeats 5 2>&1 | grep "^hybrid"
cp /tmp/profile/summary.json $OUT/profile-summary.json 2>/dev/null
echo "== library, 10 processes, llmlingua 0.2.2 beside it"
timeout 240 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
  --method hybrid --data .carry/nq/gold_at_0.jsonl.gz .carry/nq/gold_at_9.jsonl.gz --batch-sizes 256,512 --limit 1024 \
  --single-requests 20 --single-warmup 5 --processes 10 --anchor-python "$ANCHOR_PYTHON" --anchor-limit 10 \
  --out $OUT/library > /tmp/bench.log 2>&1
echo "exit $?"; grep -E "^\| [0-9]|Single|llmlingua|Speed" /tmp/bench.log | tail -6
for run in "10:1 16 128" "13:16 128"; do
  workers=${run%%:*}; clients=${run#*:}
  echo "== REST serve --workers $workers"
  OUT=/tmp/rest-$workers REST_LIBRARY=0 REST_RUNS=hybrid:$workers REST_CLIENTS="$clients" REST_SECONDS=15 REST_REQUESTS=3000 \
    REST_RUN_TIMEOUT=160 REST_EXTRA="--settle-s 4" bash eval/device/rest_bench.sh 2>&1 | grep -v -iE "warn" | tail -5
  cp /tmp/rest-$workers/rest/hybrid-w$workers.json $OUT/ 2>/dev/null
done
find $OUT -name "*.jsonl" -delete; find $OUT -type f | sort
