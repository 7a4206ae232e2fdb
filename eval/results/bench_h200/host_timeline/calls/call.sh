# One call (session 20): where the host time of `hybrid` goes on the lent H200's host, and the REST lone-request
# re-check the overlap call (../../overlap/) left open. (1) the lone profile (cached and new sentence units) with its
# cProfile text; (2) one process, batches of 64 and 256 distinct NQ prompts: prompts/s and a cProfile of one
# 64-prompt batch (host functions by own time); (3) REST `serve --workers 10`, 1 client, sides new/old/old/new
# (old: .carry/ab/old, git 047a3e1's engines and hybrid/attention methods, before the overlap change).
# Carry: .carry/x2w .carry/prof .carry/nq .carry/ab. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
for units in cached new; do
  flag=""; [ $units = new ] && flag="--new-units"
  echo "== lone profile, $units sentence units"
  timeout 60 python3 eval/device/profile_latency.py --kit .carry/prof --out /tmp/profile-$units --methods hybrid \
    --repeats 5 $flag 2>&1 | grep "^hybrid"
  cp /tmp/profile-$units/hybrid.txt $OUT/lone-$units.txt
done
echo "== one process, batches of distinct prompts"
timeout 150 python3 - "$OUT/batch-64.txt" <<'PY' 2>&1 | grep -v -i warn | tail -4
import cProfile, gzip, io, json, pstats, sys, time
import torch
torch.set_num_threads(1)
from ctxcompress import Compressor
rows = [json.loads(l) for f in ("gold_at_0", "gold_at_9") for l in gzip.open(f".carry/nq/{f}.jsonl.gz", "rt")]
reqs = [{"method": "hybrid", "question": r["question"], "budget": {"rate": 0.25},
         "documents": [f"Document [{i}](Title: {x['title']}) {x['text']}" for i, x in enumerate(r["ctxs"], 1)]}
        for r in rows]
c = Compressor(device="cuda")
c.compress_batch(reqs[:64])
start = 64
for size in (64, 256, 64):
    batch = reqs[start:start + size]; start += size
    torch.cuda.synchronize(); t = time.perf_counter()
    if size == 64 and start > 500:
        prof = cProfile.Profile(); prof.enable()
    c.compress_batch(batch); torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    print(f"batch {size}: {size / seconds:.1f} prompts/s ({seconds * 1000 / size:.2f} ms per prompt)", flush=True)
prof.disable()
text = io.StringIO()
pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(45)
pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(60)
open(sys.argv[1], "w").write(text.getvalue())
PY
mkdir -p /tmp/newside && (cd .carry/ab/old && find . -type f) | while read -r f; do mkdir -p "/tmp/newside/$(dirname "$f")"; cp "$f" "/tmp/newside/$f"; done
i=0
for side in new old old new; do
  i=$((i + 1)); src=/tmp/newside; [ $side = old ] && src=.carry/ab/old
  (cd $src && find . -type f) | while read -r f; do cp "$src/$f" "$f"; done
  echo "== $side: REST serve --workers 10, 1 client"
  OUT=/tmp/rest-$side REST_LIBRARY=0 REST_RUNS=hybrid:10 REST_CLIENTS="1" REST_SECONDS=12 REST_REQUESTS=3000 \
    REST_RUN_TIMEOUT=70 REST_EXTRA="--settle-s 2" bash eval/device/rest_bench.sh 2>&1 | grep -E "^ +1 " | tail -1
  cp /tmp/rest-$side/rest/hybrid-w10.json $OUT/rest-$i-$side.json 2>/dev/null
done
find $OUT -type f | sort
