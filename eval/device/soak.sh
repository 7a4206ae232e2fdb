#!/usr/bin/env bash
# Issue 22's soak: `ctxcompress serve --workers 6` on one lent H200 (random weights from the real SmolLM2-135M and
# all-MiniLM-L6-v2 configs, hybrid at rate 0.25 on NQ 20-document rows) at 1x then 2x its measured capacity,
# SOAK_MINUTES (default 5) in all; lost / duplicated / 5xx / 429 + Retry-After, RSS and GPU memory over time.
# SOAK_WORKERS server processes (default 6), SOAK_CLIENT_PROCESSES load-generator processes (default 4; runs 1-8 of
# eval/results/soak_h200 had one).
# Call: carry [".carry/x2w", ".carry/prof", ".carry/nq"], command `bash eval/device/soak.sh`; results in $OUT/soak/.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/x2w/*.whl 2>&1 | tail -2
export PYTHONPATH="/tmp/site:$PWD:$PWD/service:$PWD/eval" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false CTXCOMPRESS_HOME=/tmp/ctxc-home
out="${OUT:-/tmp/out}/soak"; mkdir -p "$out"
listen_drops() {  # the kernel's count of connections a full accept queue dropped (TcpExt of /proc/net/netstat)
  awk '$1 == "TcpExt:" { if (!n) { split($0, names); n = 1 } else for (i = 2; i <= NF; i++)
    if (names[i] ~ /^Listen(Overflows|Drops)$/) printf "%s=%s ", names[i], $i }' /proc/net/netstat; echo
}
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc; echo "commit ${GIT_COMMIT:-unknown}"
  echo "net.core.somaxconn $(cat /proc/sys/net/core/somaxconn)"; echo "before: $(listen_drops)"; } \
  | tee "$out/device.txt"
timeout "${SOAK_TIMEOUT:-570}" python3 scripts/soak_test.py --serve-workers "${SOAK_WORKERS:-6}" \
  --device "${SOAK_DEVICE:-cuda:0}" --random-kit .carry/prof --method hybrid --docs 20 --rate 0.25 \
  --data .carry/nq/gold_at_9.jsonl.gz --callers "${SOAK_CALLERS:-128}" --minutes "${SOAK_MINUTES:-5}" \
  --client-processes "${SOAK_CLIENT_PROCESSES:-4}" \
  --out "$out/soak.json" 2>&1 | grep -v -E "Loading weights|it/s\]" | tail -40 | tee "$out/soak.log"
echo "after: $(listen_drops)" | tee -a "$out/device.txt"
