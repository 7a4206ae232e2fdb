# One call (written in session 21, run in the next, after call4.sh): ten engine processes, batch 440, with the
# length-banded passes (side "new", the tree) and without (side "old", .carry/ab/old3 as in call4.sh); then the new
# side fed in chunks of 8 and 16 (`bench --chunk`: the next chunk to whichever process is free; in equal slices sent
# at once the ten run in phase, host work together, then GPU work together).
# Carry: .carry/x2w .carry/prof .carry/nq .carry/ab. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/results/bench_h200/host_waits/calls/sides.sh
for side in new old; do
  side_tree $side
  echo "== $side: ten processes, batch 440: $(bench --data .carry/nq/gold_at_0.jsonl.gz .carry/nq/gold_at_9.jsonl.gz \
    --batch-sizes 440 --limit 435 --processes 10 --out /tmp/p10) $(grep -E '^\| 440' /tmp/bench.log)"
done
side_tree new  # ten processes fed from a queue (bench --chunk: the next 8 requests to whichever is free)
for chunk in 8 16; do
  echo "== new: ten processes, batch 440, chunks of $chunk: $(bench --data .carry/nq/gold_at_0.jsonl.gz \
    .carry/nq/gold_at_9.jsonl.gz --batch-sizes 440 --limit 435 --processes 10 --chunk $chunk --out /tmp/p10c) \
    $(grep -E '^\| 440' /tmp/bench.log)"
done
side_tree new
