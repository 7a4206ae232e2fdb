# One call (session 22): does a request's prompt on the GPU (bf16) depend on its batch-mates? 16 NQ requests in one
# compress_batch against one compress each, for hybrid and longllmlingua (random weights from the real configs).
# Carry: .carry/x2w .carry/prof .carry/nq. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
for method in hybrid longllmlingua; do
  for mode in batch alone; do
    flag=""; [ $mode = alone ] && flag=--alone
    timeout 80 python3 eval/device/prompt_digest.py --data .carry/nq/gold_at_0.jsonl.gz --limit 16 --method $method \
      $flag --out /tmp/$method-$mode.json --prompts-out $OUT/$method-$mode-prompts.json 2>&1 | grep -v -E "Loading|Writing" | tail -2
  done
  echo "== $method: $(python3 eval/device/prompt_digest.py --compare /tmp/$method-batch.json /tmp/$method-alone.json)"
done
