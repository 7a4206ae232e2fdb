# One call (session 21): (1) which ctxcompress lines spend the device's time in one process's batch of 64
# (`bench --profile --profile-stacks`; session 20's call5 measured 4.22 ms of kernels per prompt: 237 prompts/s at
# most); (2) ten engine processes sharing the GPU by time-slicing (as session 20's 144.5 prompts/s) and the same
# under CUDA MPS, where the binary exists: whether the contexts' switching, not the kernels, caps the scan.
# Carry: .carry/x2w .carry/prof .carry/nq. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
timeout 150 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
  --method hybrid --data .carry/nq/gold_at_0.jsonl.gz --batch-sizes 64 --limit 64 --single-requests 2 \
  --single-warmup 1 --profile --profile-stacks --out $OUT/stacks > /tmp/bench.log 2>&1
echo "exit $?"; grep -E "Device kernel time" /tmp/bench.log; head -32 $OUT/stacks/profile_batch64_stacks.txt | cut -c1-200
rm -f $OUT/stacks/profile_single* $OUT/stacks/*.md
mps=$(command -v nvidia-cuda-mps-control); echo "MPS control: ${mps:-absent}"
for mode in plain mps; do
  if [ $mode = mps ]; then
    [ -n "$mps" ] || break
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
    mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY; nvidia-cuda-mps-control -d; echo "mps daemon: $?"
  fi
  echo "== library, 10 engine processes, $mode"
  timeout 170 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
    --method hybrid --data .carry/nq/gold_at_0.jsonl.gz .carry/nq/gold_at_9.jsonl.gz --batch-sizes 440 \
    --limit 435 --single-requests 2 --single-warmup 1 --processes 10 --out $OUT/p10-$mode > /tmp/bench.log 2>&1
  echo "exit $?"; grep -E "^\| [0-9]" /tmp/bench.log | tail -2; rm -f $OUT/p10-$mode/*.md $OUT/p10-$mode/*.jsonl
  [ $mode = mps ] && { echo quit | nvidia-cuda-mps-control; tail -3 /tmp/mps-log/control.log; }
done
find $OUT -type f | sort
