# The last 90 s of the session's device time: the lone profile with new sentence units again, new side then old.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/x2w/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD:$PWD/service:$PWD/eval HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CTXCOMPRESS_HOME=/tmp/ctxc-home
export TOKENIZERS_PARALLELISM=false
for side in new old; do
  if [ $side = old ]; then (cd .carry/ab/old && find . -type f) | while read -r f; do cp ".carry/ab/old/$f" "$f"; done; fi
  timeout 40 python3 eval/device/profile_latency.py --kit .carry/prof --out /tmp/p-$side --methods hybrid --repeats 3 \
    --new-units 2>&1 | grep "^hybrid" | sed "s/^/$side /" | tee -a $OUT/recheck.txt
done
