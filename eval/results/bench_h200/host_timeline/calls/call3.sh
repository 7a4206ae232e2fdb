# One call (session 20): the library bench with 1, 2, 3 and 10 engine processes (each takes a slice of a batch),
# batches of 220 and 440 distinct NQ prompts (all the carried rows), llmlingua 0.2.2 beside the first run.
# Call 2 saw one process make 225 prompts/s at batch 256, above the 151 of 10 processes (session 19).
# Carry: .carry/x2w .carry/prof .carry/nq .carry/anc. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
for processes in 1 2 3 10; do
  anchor=""; [ $processes = 1 ] && anchor="--anchor-python $ANCHOR_PYTHON --anchor-limit 10"
  echo "== library, $processes engine process(es)"
  timeout 170 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
    --method hybrid --data .carry/nq/gold_at_0.jsonl.gz .carry/nq/gold_at_9.jsonl.gz --batch-sizes 220,440 \
    --limit 435 --single-requests 5 --single-warmup 3 --processes $processes $anchor --out $OUT/library-p$processes \
    > /tmp/bench.log 2>&1
  echo "exit $?"; grep -E "^\| [0-9]|llmlingua|Speed-up" /tmp/bench.log | tail -4
  rm -f $OUT/library-p$processes/*.md $OUT/library-p$processes/*.jsonl
done
find $OUT -type f | sort
