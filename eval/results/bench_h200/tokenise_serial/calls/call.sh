# One call (session 22): the two tokenisers of a hybrid request run on two threads (the tree: the scorer's on a host
# thread beside the encoder's) or one after the other (side "serial": .carry/ab/serial, the same hybrid.py with the
# scorer's tokenising inline). On this repository's CPU the threads overlap little (MiniLM's 3.8 ms becomes 7.2 ms
# beside SmolLM2's); on the H200 host the trace had MiniLM at 12.1 ms beside SmolLM2's 7.7. The lone request
# (profile_latency.py) thread/serial/serial/thread, then one process at batch 440 per side.
# Carry: .carry/x2w .carry/prof .carry/nq .carry/ab. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
cp ctxcompress/methods/hybrid.py /tmp/hybrid-thread.py
cp .carry/ab/serial/ctxcompress/methods/hybrid.py /tmp/hybrid-serial.py
for side in thread serial serial thread; do
  cp /tmp/hybrid-$side.py ctxcompress/methods/hybrid.py
  echo "== lone, $side"; timeout 60 python3 eval/device/profile_latency.py --kit .carry/prof --out /tmp/prof-$side \
    --methods hybrid --repeats 5 2>&1 | grep "^hybrid"
done
for side in thread serial; do
  cp /tmp/hybrid-$side.py ctxcompress/methods/hybrid.py
  timeout 100 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
    --method hybrid --data .carry/nq/gold_at_0.jsonl.gz .carry/nq/gold_at_9.jsonl.gz --batch-sizes 440 --limit 435 \
    --single-requests 2 --single-warmup 1 --out /tmp/p1 > /tmp/bench.log 2>&1
  echo "== one process, batch 440, $side: exit $? $(grep -E '^\| 440' /tmp/bench.log)"
done
cp /tmp/hybrid-thread.py ctxcompress/methods/hybrid.py
