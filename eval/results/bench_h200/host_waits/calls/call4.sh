# One call (written in session 21, run in the next): the length-banded passes (git c7a7f5d) on the GPU. Side "new":
# the tree; side "old": attention.py, encoder.py and batching.py before it (.carry/ab/old3, from git e53f8bb; make
# it with `git show e53f8bb:ctxcompress/engines/<f>`). (1) per side: `bench --profile` batch 64 (the device's time
# per prompt) and the digests of the 64 prompts (prompt_digest.py), compared; (2) one process, batch 440, new/old;
# (3) the lone request, new/old. Ten processes: call5.sh.
# Carry: .carry/x2w .carry/prof .carry/nq .carry/ab. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/results/bench_h200/host_waits/calls/sides.sh
for side in new old; do
  side_tree $side
  echo "== $side: one process, batch 64, profiled: $(bench --data .carry/nq/gold_at_0.jsonl.gz --batch-sizes 64 \
    --limit 64 --profile --out $OUT/b64-$side) $(grep -E '^\| 64' /tmp/bench.log)"
  grep -E "Device kernel time" /tmp/bench.log; rm -f $OUT/b64-$side/*.md $OUT/b64-$side/profile_{single,batch64_self_cpu}*
  timeout 90 python3 eval/device/prompt_digest.py --data .carry/nq/gold_at_0.jsonl.gz --limit 64 \
    --out /tmp/digest-$side.json 2>&1 | grep -v -E "Loading|Writing" | tail -2
done
python3 eval/device/prompt_digest.py --compare /tmp/digest-new.json /tmp/digest-old.json
for side in new old; do
  side_tree $side
  echo "== $side: one process, batch 440: $(bench --data .carry/nq/gold_at_0.jsonl.gz .carry/nq/gold_at_9.jsonl.gz \
    --batch-sizes 440 --limit 435 --out /tmp/p1) $(grep -E '^\| 440' /tmp/bench.log)"
done
for side in new old; do
  side_tree $side
  echo "== lone, $side"; timeout 60 python3 eval/device/profile_latency.py --kit .carry/prof --out /tmp/prof-$side \
    --methods hybrid --repeats 5 2>&1 | grep "^hybrid"
done
side_tree new
find $OUT -type f | sort
