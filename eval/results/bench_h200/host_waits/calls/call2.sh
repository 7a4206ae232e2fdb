# One call (session 21): call.sh's new side failed in bench (single process and ten) without its log; (1) the new
# side's error; (2) the device time by operator input shapes (`bench --profile-stacks`: this image's torch records
# no Python frames) on the old side (the reads are not what the shapes table is for).
# Carry: .carry/x2w .carry/prof .carry/nq .carry/ab. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
timeout 100 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
  --method hybrid --data .carry/nq/gold_at_0.jsonl.gz --batch-sizes 8 --limit 8 --single-requests 1 \
  --single-warmup 0 --out /tmp/new > /tmp/bench.log 2>&1
echo "new exit $?"; grep -v -E "Loading|Writing" /tmp/bench.log | tail -25
cp -r .carry/ab/old2/ctxcompress/. ctxcompress/
timeout 150 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
  --method hybrid --data .carry/nq/gold_at_0.jsonl.gz --batch-sizes 64 --limit 64 --single-requests 2 \
  --single-warmup 1 --profile --profile-stacks --out $OUT/stacks > /tmp/bench.log 2>&1
echo "old exit $?"; cut -c1-57,141-170,185-200,213-340 $OUT/stacks/profile_batch64_shapes.txt | head -44
find $OUT -type f | sort
