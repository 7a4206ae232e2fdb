#!/usr/bin/env bash
# Multi-GPU start-up check on a lent 2-GPU machine: `ctxcompress serve --device cuda:0,cuda:1` with --workers 1,
# then 6, must become ready (/readyz 200 listing both devices) and serve concurrent requests on both.
# The scorer is a tiny random Llama with SmolLM2's tokenizer (start-up races do not depend on weight values).
# Call: carry [".carry/x2"] (wheels + tiny-llama, made as in eval/device/README.md), command
#   bash eval/device/multi_gpu_serve.sh
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/x2/wheels/*.whl 2>&1 | tail -2
export PYTHONPATH="/tmp/site:$PWD:$PWD/service" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export CTXCOMPRESS_MODELS="{\"smollm2-135m\": {\"kind\": \"causal-lm\", \"path\": \"$PWD/.carry/x2/tiny-llama\"}}"
export CTXCOMPRESS_DEFAULT_METHOD=llmlingua CTXCOMPRESS_PRELOAD_MODELS=smollm2-135m CTXCOMPRESS_HOME=/tmp/ctxc-home
nvidia-smi --query-gpu=index,name --format=csv,noheader
for workers in ${WORKERS:-1 6}; do
  port=$((18000 + workers))
  python3 -m ctxcompress.cli serve --device cuda:0,cuda:1 --workers "$workers" --port "$port" >"/tmp/serve-$workers.log" 2>&1 &
  pid=$!
  python3 - "$port" "$workers" <<'PY'
import concurrent.futures, json, sys, time
import httpx
port, workers = int(sys.argv[1]), sys.argv[2]
base = f"http://127.0.0.1:{port}"
started, ready = time.time(), None
while time.time() - started < 60:
    try:
        r = httpx.get(f"{base}/readyz", timeout=5)
        if r.status_code == 200:
            ready = r.json()
            break
    except httpx.HTTPError:
        pass
    time.sleep(1)
print(f"workers={workers} ready after {time.time() - started:.1f}s: {json.dumps(ready)}")
docs = [f"Document {i}: the river number {i} flows into the sea near city {i}. It is {i * 10} km long." for i in range(8)]
body = {"documents": docs, "question": "Which river is 30 km long?", "budget": {"rate": 0.4}}
with concurrent.futures.ThreadPoolExecutor(32) as pool:
    codes = list(pool.map(lambda _: httpx.post(f"{base}/v1/compress", json=body, timeout=60).status_code, range(64)))
print(f"workers={workers} 64 concurrent requests -> status counts {dict((c, codes.count(c)) for c in set(codes))}")
metrics = httpx.get(f"{base}/metrics", timeout=5).text
print("\n".join(line for line in metrics.splitlines() if line.startswith("ctxcompress_batches") or "devices" in line)[:800])
PY
  kill -TERM "$pid"; wait "$pid"
  grep -i -E "error|failed|Traceback" "/tmp/serve-$workers.log" | head -5
done
