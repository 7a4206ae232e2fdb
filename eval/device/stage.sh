#!/usr/bin/env bash
# bash eval/device/stage.sh N   (on the device, first in call N = 1, 2, 3; the call carries .carry/partN)
# Copies .carry/partN into $CTXC_ROOT/ctxc-stage (default /tmp/ctxc-stage), which survives between calls while the
# machine stays warm (30 s after a call), and checks the chunk's sha256 at once.
set -euo pipefail

n="${1:?usage: stage.sh N (1, 2 or 3)}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STAGE="${CTXC_ROOT:-/tmp}/ctxc-stage"
src="$REPO/.carry/part$n"
die() { echo "stage.sh: $*" >&2; exit 1; }

[[ -f "$src/payload.tar.xz.part$n" ]] || die "$src/payload.tar.xz.part$n missing: carry .carry/part$n in call $n"
mkdir -p "$STAGE"
# Chunks of another pack (another payload sha256) must not mix with this one's.
if [[ -f "$STAGE/PAYLOAD.sha256" ]] && ! cmp -s "$STAGE/PAYLOAD.sha256" "$src/PAYLOAD.sha256"; then
    echo "stage.sh: chunks of another pack in $STAGE: removed" >&2
    rm -f "$STAGE"/payload.tar.xz.part* "$STAGE"/part*.sha256
fi
cp -f "$src"/* "$STAGE"/
(cd "$STAGE" && sha256sum -c --quiet "part$n.sha256") || die "part $n: sha256 mismatch after the copy"
echo "staged part $n in $STAGE ($(du -sh "$STAGE" | cut -f1)): $(cd "$STAGE" && ls payload.tar.xz.part* | tr '\n' ' ')"
