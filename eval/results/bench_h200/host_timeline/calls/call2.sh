# One call (session 20, code of git 61c5200: SPLIT_PARTS and trace --split-parts exist only there): (1) the timeline of a lone `hybrid` request (eval/device/trace_request.py), documents
# tokenised in two runs at once (SPLIT_PARTS 2) and in one (1), interleaved, with new and with cached sentence
# units; (2) one process, batches of 64 and 256 distinct NQ prompts: prompts/s, and the device's kernel time per
# prompt of a 64-prompt batch (torch.profiler), i.e. what one GPU could do if the host kept it busy; (3) REST
# `serve --workers 10`, 1 and 16 clients, SPLIT_PARTS 2 / 1 / 1 / 2.
# Carry: .carry/x2w .carry/prof .carry/nq. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
for run in "2 --new-units" "1 --new-units" "2" "1" "2 --new-units" "1 --new-units"; do
  set -- $run
  echo "== trace: SPLIT_PARTS $1 ${2:-cached units}"
  timeout 60 python3 eval/device/trace_request.py --kit .carry/prof --repeats 5 --split-parts $1 ${2:-} 2>&1 \
    | grep -v -iE "warn|Loading" | tee -a $OUT/trace.txt | grep "median request"
done
echo "== one process, batches of distinct prompts"
timeout 150 python3 - <<'PY' 2>&1 | grep -v -i warn | tail -5
import gzip, json, time
import torch
torch.set_num_threads(1)
from ctxcompress import Compressor
from ctxcompress.engines.options import EngineOptions
rows = [json.loads(l) for f in ("gold_at_0", "gold_at_9") for l in gzip.open(f".carry/nq/{f}.jsonl.gz", "rt")]
reqs = [{"method": "hybrid", "question": r["question"], "budget": {"rate": 0.25},
         "documents": [f"Document [{i}](Title: {x['title']}) {x['text']}" for i, x in enumerate(r["ctxs"], 1)]}
        for r in rows]
c = Compressor(device="cuda", engine_options=EngineOptions(chunk_cache_mb=0))
c.compress_batch(reqs[:64]); c.compress_batch(reqs[64:320])
start = 320
for size in (64, 256):
    batch = reqs[start:start + size]; start += size
    torch.cuda.synchronize(); t = time.perf_counter()
    c.compress_batch(batch); torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    print(f"batch {size}: {size / seconds:.1f} prompts/s ({seconds * 1000 / size:.2f} ms per prompt, wall)", flush=True)
batch = reqs[start:start + 64]
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
    c.compress_batch(batch); torch.cuda.synchronize()
kernel_us = sum(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) for e in prof.key_averages())
print(f"batch 64 under the profiler: device kernel time {kernel_us / 1000 / 64:.2f} ms per prompt "
      f"-> {64e6 / kernel_us:.0f} prompts/s if the GPU were never idle")
PY
for split in 2 1 1 2; do
  sed -i "s/^SPLIT_PARTS = .*/SPLIT_PARTS = $split/" ctxcompress/engines/tokenization.py
  echo "== REST serve --workers 10, SPLIT_PARTS $split"
  OUT=/tmp/rest-$split REST_LIBRARY=0 REST_RUNS=hybrid:10 REST_CLIENTS="1 16" REST_SECONDS=10 REST_REQUESTS=3000 \
    REST_RUN_TIMEOUT=80 REST_EXTRA="--settle-s 2" bash eval/device/rest_bench.sh 2>&1 | grep -E "^ +(1|16) " | tail -2
done
sed -i "s/^SPLIT_PARTS = .*/SPLIT_PARTS = 2/" ctxcompress/engines/tokenization.py
find $OUT -type f | sort
