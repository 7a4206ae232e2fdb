# One call (session 22): the lone request's spread on one lent host, the tree at the length-banded passes. The library
# (profile_latency.py, hybrid, 5 repeats over the kit's 8 prompts) three times, then the service (serve --workers 10,
# the GPU's default) with one client, twice, 20-s levels after a 5-s settle.
# Carry: .carry/x2w .carry/prof .carry/nq. Run: GIT_COMMIT=<sha> bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
for run in 1 2 3; do
  echo "== library lone, run $run"; timeout 60 python3 eval/device/profile_latency.py --kit .carry/prof \
    --out /tmp/prof-$run --methods hybrid --repeats 5 2>&1 | grep "^hybrid"
done
for run in 1 2; do
  timeout 120 python3 scripts/load_test.py --workers 10 --random-kit .carry/prof --device cuda --method hybrid \
    --docs 20 --rate 0.25 --data .carry/nq/gold_at_9.jsonl.gz --concurrency 1 --requests 1500 --max-seconds 20 \
    --warmup 64 --settle-s 5 --out $OUT/rest-1client-$run.json > /tmp/rest.log 2>&1
  echo "== REST one client, run $run: exit $?"; grep -A1 -E "^clients" /tmp/rest.log
done
