# One call (session 20, the last ~170 s of device time): a lone REST request's timeline in one process
# (eval/device/trace_rest.py: where the ~10 ms between the REST and the library lone figures go), then the
# library's lone timeline (trace_request.py) on the same host. Carry: .carry/x2w .carry/prof. Run: bash <this file>
set -uo pipefail
source eval/device/random_kit_env.sh
timeout 60 python3 eval/device/trace_rest.py --kit .carry/prof --requests 48 2>&1 | grep -v -iE "warn|Loading" | tail -9
timeout 40 python3 eval/device/trace_request.py --kit .carry/prof --repeats 3 2>&1 | grep -v -iE "warn|Loading" | head -18
