# One call (session 21): call.sh found the pinned reads cut the device's time per prompt (4.22 -> 3.88 ms) and ten
# processes gained ~5%, but the lone request read 30.1 vs 23.4 ms (an earlier pair: 30.0 vs 29.8). Is it the sleeping
# wait (a blocking event's wake-up)? Side "sleep": the tree (to_host waits on Event(blocking=True)); side "spin": the
# same pinned copies with a default (spinning) event. The lone request sleep/spin/sleep/spin, then ten processes
# (batch 440) on the spin side.
# Carry: .carry/x2w .carry/prof .carry/nq. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
cp ctxcompress/engines/transfers.py /tmp/transfers-sleep.py
sed 's/torch.cuda.Event(blocking=True)/torch.cuda.Event()/' /tmp/transfers-sleep.py > /tmp/transfers-spin.py
grep -c "Event()" /tmp/transfers-spin.py
for side in sleep spin sleep spin; do
  cp /tmp/transfers-$side.py ctxcompress/engines/transfers.py
  echo "== lone, $side"; timeout 60 python3 eval/device/profile_latency.py --kit .carry/prof --out /tmp/prof-$side \
    --methods hybrid --repeats 5 2>&1 | grep "^hybrid"
done
timeout 100 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
  --method hybrid --data .carry/nq/gold_at_0.jsonl.gz .carry/nq/gold_at_9.jsonl.gz --batch-sizes 440 \
  --limit 435 --single-requests 2 --single-warmup 1 --processes 10 --out /tmp/p10 > /tmp/bench.log 2>&1
echo "== 10 processes, spin: exit $? $(grep -E '^\| 440' /tmp/bench.log)"
