# One call (session 20, the session's last device time): documents tokenised in two runs at once (SPLIT_PARTS 2)
# against one (1): the lone profile with new sentence units, 2/1/1/2, then the library bench with 10 processes, 2 then 1.
# Carry: .carry/x2w .carry/prof .carry/nq. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
for split in 2 1 1 2; do
  sed -i "s/^SPLIT_PARTS = .*/SPLIT_PARTS = $split/" ctxcompress/engines/tokenization.py
  echo "== lone profile, new units, SPLIT_PARTS $split"
  timeout 45 python3 eval/device/profile_latency.py --kit .carry/prof --out /tmp/p --methods hybrid --repeats 5 \
    --new-units 2>&1 | grep "^hybrid"
done
for split in 2 1; do
  sed -i "s/^SPLIT_PARTS = .*/SPLIT_PARTS = $split/" ctxcompress/engines/tokenization.py
  echo "== library, 10 processes, SPLIT_PARTS $split"
  timeout 75 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
    --method hybrid --data .carry/nq/gold_at_0.jsonl.gz .carry/nq/gold_at_9.jsonl.gz --batch-sizes 440 \
    --limit 435 --single-requests 5 --single-warmup 3 --processes 10 --out /tmp/lib-$split > /tmp/bench.log 2>&1
  echo "exit $?"; grep -E "^\| [0-9]" /tmp/bench.log | tail -1
done
