# Run from the repository root on the lent GPU (carry .carry/x2w .carry/prof .carry/nq [.carry/ab] and this file).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/x2w/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD:$PWD/service:$PWD/eval HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false CTXCOMPRESS_HOME=/tmp/ctxc-home
timeout 500 python3 eval/device/memory_profile.py --kit .carry/prof --data .carry/nq/gold_at_9.jsonl.gz --batches 150 --configs expandable,expandable-no-graphs --out $OUT/memory 2>&1 | grep -v -E "Loading weights|warn"
