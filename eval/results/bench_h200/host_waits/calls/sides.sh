# shellcheck shell=bash
# Sourced by call4.sh and call5.sh: the random-weights kit, the two sides of the length-banded change (side_tree new:
# the tree as carried; side_tree old: .carry/ab/old3 copied over it) and the library bench on hybrid (bench ARGS...).
source eval/device/random_kit_env.sh
cp -r ctxcompress /tmp/new-ctxcompress
side_tree() { rm -rf ctxcompress && cp -r /tmp/new-ctxcompress ctxcompress; [ $1 = old ] && cp -r .carry/ab/old3/ctxcompress/. ctxcompress/; true; }
bench() { timeout 170 python3 eval/ctxcompress_eval/bench.py --device cuda --model-dir /tmp/ctxc-random/smollm2-135m \
  --method hybrid --single-requests 2 --single-warmup 1 "$@" > /tmp/bench.log 2>&1; echo "exit $?"; }
