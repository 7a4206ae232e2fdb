# One call (session 21): the device reads through pinned memory and a blocking event (`transfers.to_host`) instead
# of `Tensor.cpu()` (pageable staging, the host spinning a core while it waits). Side "new": the tree; side "old":
# the four engine files before the change (.carry/ab/old2). (1) [run once, found 0 Python frames: dropped] whether torch.profiler links CUDA operators to
# Python frames here; (2) `bench --profile --profile-stacks` batch 64, new/old; (3) ten engine processes, batch 440,
# new/old/new/old, with the host's busy share (/proc/stat) and the GPU's utilisation (nvidia-smi) over each run;
# (4) the lone request, new/old (profile_latency.py).
# Carry: .carry/x2w .carry/prof .carry/nq .carry/ab. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
cp -r ctxcompress /tmp/new-ctxcompress
for side in new old; do
  [ $side = old ] && cp -r .carry/ab/old2/ctxcompress/. ctxcompress/
  timeout 150 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
    --method hybrid --data .carry/nq/gold_at_0.jsonl.gz --batch-sizes 64 --limit 64 --single-requests 2 \
    --single-warmup 1 --profile --profile-stacks --out $OUT/stacks-$side > /tmp/bench.log 2>&1
  echo "== one process, batch 64, $side: exit $? $(grep -E '^\| 64' /tmp/bench.log)"
  grep -E "Device kernel time" /tmp/bench.log; grep -E "Memcpy|total" $OUT/stacks-$side/profile_batch64_stacks.txt
  rm -f $OUT/stacks-$side/profile_single* $OUT/stacks-$side/*.md $OUT/stacks-$side/profile_batch64_self_*
done
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat; }
for side in new old new old; do
  rm -rf ctxcompress && cp -r /tmp/new-ctxcompress ctxcompress
  [ $side = old ] && cp -r .carry/ab/old2/ctxcompress/. ctxcompress/
  nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 250 > /tmp/gpu.txt & smi=$!
  read b0 i0 < <(busy)
  timeout 170 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
    --method hybrid --data .carry/nq/gold_at_0.jsonl.gz .carry/nq/gold_at_9.jsonl.gz --batch-sizes 440 \
    --limit 435 --single-requests 2 --single-warmup 1 --processes 10 --out /tmp/p10 > /tmp/bench.log 2>&1
  rc=$?; read b1 i1 < <(busy); kill $smi
  echo "== 10 processes, $side: exit $rc $(grep -E '^\| 440' /tmp/bench.log)"
  awk -v b=$((b1-b0)) -v i=$((i1-i0)) 'BEGIN{printf "   host busy over the whole run (load included): %.0f%% of 16 cores\n", 100*b/(b+i)}'
  sort -n /tmp/gpu.txt | awk '{a[NR]=$1} END{printf "   GPU utilisation samples: %d, median %s%%, p90 %s%%\n", NR, a[int(NR/2)+1], a[int(NR*0.9)+1]}'
done
for side in new old; do
  rm -rf ctxcompress && cp -r /tmp/new-ctxcompress ctxcompress
  [ $side = old ] && cp -r .carry/ab/old2/ctxcompress/. ctxcompress/
  echo "== lone, $side"; timeout 90 python3 eval/device/profile_latency.py --kit .carry/prof --out /tmp/prof-$side \
    --methods hybrid --repeats 5 2>&1 | grep "^hybrid"
done
rm -rf ctxcompress && cp -r /tmp/new-ctxcompress ctxcompress
find $OUT -type f | sort
