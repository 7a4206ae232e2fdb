# One call (session 19): A/B of the overlap change (hybrid queues the encoder pass, splits sentences while the device
# runs the encoder's and the LM's passes; host->device copies through pinned memory). Side "new" is the working
# tree, side "old" the tree with .carry/ab/old (git 047a3e1's engines/{attention,encoder,encoder_graphs,scorer}.py and
# methods/{attention,hybrid}.py) copied over it. First the CUDA tests of the new side; per side: the prompts of 16 NQ
# requests (compared at the end), the lone profile with cached and with new sentence units, REST 1 and 16 clients.
# Carry: .carry/x2w .carry/prof .carry/nq .carry/pt .carry/ab. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
echo "== CUDA tests (new side)"
timeout 100 python3 -m pytest -q -rA -c /dev/null --rootdir . -p no:cacheprovider tests/unit_tests/test_encoder_graphs.py \
  tests/unit_tests/test_attention_method.py tests/unit_tests/test_chunk_cache.py 2>&1 | grep -E "cuda|passed|failed|Error" | tail -8
for side in new old; do
  if [ $side = old ]; then (cd .carry/ab/old && find . -type f) | while read -r f; do cp ".carry/ab/old/$f" "$f"; done; fi
  echo "== $side: prompts"
  timeout 60 python3 - "$OUT/prompts-$side.json" <<'PY' 2>&1 | grep -v -i warn | tail -2
import gzip, json, sys
import torch
torch.set_num_threads(1)
from ctxcompress import Compressor
rows = [json.loads(l) for l in gzip.open(".carry/nq/gold_at_0.jsonl.gz", "rt")][:16]
c = Compressor(device="cuda")
reqs = [{"method": "hybrid", "question": r["question"], "budget": {"rate": 0.25},
         "documents": [f"Document [{i}](Title: {x['title']}) {x['text']}" for i, x in enumerate(r["ctxs"], 1)]} for r in rows]
out = [c.compress(r).prompt for r in reqs] + [c.compress(r).prompt for r in reqs[:4]] + [x.prompt for x in c.compress_batch(reqs[:6])]
json.dump(out, open(sys.argv[1], "w")); print("prompts", len(out))
PY
  for units in cached new; do
    flag=""; [ $units = new ] && flag="--new-units"
    echo "== $side: lone profile, $units sentence units"
    timeout 70 python3 eval/device/profile_latency.py --kit .carry/prof --out /tmp/profile-$side-$units --methods hybrid \
      --repeats 5 $flag 2>&1 | grep "^hybrid"
  done
  echo "== $side: REST serve --workers 10"
  OUT=/tmp/rest-$side REST_LIBRARY=0 REST_RUNS=hybrid:10 REST_CLIENTS="1 16" REST_SECONDS=12 REST_REQUESTS=3000 \
    REST_RUN_TIMEOUT=100 REST_EXTRA="--settle-s 3" bash eval/device/rest_bench.sh 2>&1 | grep -v -iE "warn" | tail -3
  cp /tmp/rest-$side/rest/hybrid-w10.json $OUT/rest-$side.json 2>/dev/null
done
python3 -c "
import json
a, b = json.load(open('$OUT/prompts-new.json')), json.load(open('$OUT/prompts-old.json'))
print('prompts identical new vs old:', sum(x == y for x, y in zip(a, b)), 'of', len(a))"
find $OUT -type f | sort
