#!/usr/bin/env bash
# Chromium for the playground's browser test (tests/integration_tests/test_playground_browser.py), from the OS
# packages. Idempotent; without root or apt-get it says so and the test skips.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [[ "$(id -u)" != "0" ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[setup] no Chromium and no root apt-get: the playground browser test will be skipped" >&2
  exit 0
fi
echo "[setup] installing Chromium (Debian package) for the playground browser test" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
  echo "[setup] Chromium could not be installed: the playground browser test will be skipped" >&2
fi
exit 0
