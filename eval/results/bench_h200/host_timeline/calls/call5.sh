# One call, written in session 20 and not run (the session's device time was spent): (1) a lone REST request's
# timeline in one process (eval/device/trace_rest.py: where the ~10 ms between the REST and the library lone
# figures go); (2) the library's lone timeline (trace_request.py) on the same host, with the probe's inputs filled
# as whole arrays (git 7f3866e; was 1.2-1.6 ms); (3) the device's kernel time per prompt in one process's batch
# of 64 (`bench --profile`): the prompts/s one GPU allows when the host never keeps it waiting.
# Carry: .carry/x2w .carry/prof .carry/nq. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
timeout 60 python3 eval/device/trace_rest.py --kit .carry/prof --requests 48 2>&1 | grep -v -iE "warn|Loading" | tail -9
timeout 40 python3 eval/device/trace_request.py --kit .carry/prof --repeats 3 --new-units 2>&1 \
  | grep -v -iE "warn|Loading" | head -20
timeout 150 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
  --method hybrid --data .carry/nq/gold_at_0.jsonl.gz --batch-sizes 64 --limit 128 --single-requests 5 \
  --single-warmup 3 --profile --out $OUT/ceiling > /tmp/bench.log 2>&1
echo "exit $?"; grep -E "^\| [0-9]|Device kernel time" /tmp/bench.log
