# One call (session 22): where the host's time goes on the GPU machine, after the length-banded passes. (1) `bench
# --cprofile`: cProfile of one process's batch of 64 hybrid requests (after the timed batches; the device's work is
# queued asynchronously there, so own time is host work); (2) a lone request's timeline and per-step medians
# (`trace_request.py`, new sentence units).
# Carry: .carry/x2w .carry/prof .carry/nq. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
timeout 150 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
  --method hybrid --data .carry/nq/gold_at_0.jsonl.gz --batch-sizes 64 --limit 64 --single-requests 2 \
  --single-warmup 1 --cprofile --out $OUT/cprofile > /tmp/bench.log 2>&1
echo "bench exit $? $(grep -E '^\| 64' /tmp/bench.log)"
rm -f $OUT/cprofile/*.md
timeout 120 python3 eval/device/trace_request.py --kit .carry/prof --repeats 5 --new-units 2>&1 \
  | grep -v -E "Loading|Writing" | tee $OUT/trace-new-units.txt | tail -40
