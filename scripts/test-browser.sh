#!/usr/bin/env bash
# The web page's browser test (tests/browser.rs, ignored by default): headless Chromium over
# WebDriver while mbtd replays the demo clip in real time. Installs `chromium` and
# `chromium-driver` when missing; writes the README's screenshots to docs/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/install-deps.sh
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing missing packages: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
exec cargo test --locked --test integration browser:: -- --ignored --nocapture "$@"
