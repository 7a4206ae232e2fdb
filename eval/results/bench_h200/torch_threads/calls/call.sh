# One call (session 19): torch's CPU threads per engine process, default (one per host core: 16 in each of 10
# processes) against one. Library bench (10 processes, --threads 1), the lone-request profile and REST
# (`serve --workers 10`, OMP_NUM_THREADS=1 in the server's environment), each A then B on the same machine.
# Carry: .carry/x2w .carry/prof .carry/nq. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
for threads in default 1; do
  extra=""; [ "$threads" = default ] || extra="--threads $threads"
  echo "== library, 10 processes, torch threads $threads"
  timeout 150 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
    --method hybrid --data .carry/nq/gold_at_0.jsonl.gz .carry/nq/gold_at_9.jsonl.gz --batch-sizes 512 --limit 1024 \
    --single-requests 20 --single-warmup 5 --processes 10 $extra --out $OUT/library-t$threads > /tmp/bench.log 2>&1
  echo "exit $?"; grep -E "^\| [0-9]|Single" /tmp/bench.log | tail -3; rm -f $OUT/library-t$threads/bench.md
done
for threads in default 1; do
  ( [ "$threads" = default ] || export OMP_NUM_THREADS=$threads
    echo "== lone request profile, OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
    timeout 80 python3 eval/device/profile_latency.py --kit .carry/prof --out /tmp/profile --methods hybrid --repeats 5 2>&1 | grep "^hybrid" )
done
for threads in default 1; do
  ( [ "$threads" = default ] || export OMP_NUM_THREADS=$threads
    echo "== REST serve --workers 10, OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
    OUT=/tmp/rest-$threads REST_LIBRARY=0 REST_RUNS=hybrid:10 REST_CLIENTS="16 128" REST_SECONDS=15 REST_REQUESTS=3000 \
      REST_RUN_TIMEOUT=130 REST_EXTRA="--settle-s 4" bash eval/device/rest_bench.sh 2>&1 | grep -v -iE "warn" | tail -4
    cp /tmp/rest-$threads/rest/hybrid-w10.json $OUT/rest-t$threads.json 2>/dev/null )
done
find $OUT -type f | sort
