#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the build and tests need, only when missing.
#   pkg-config, libasound2-dev: ALSA capture (alsa-sys)
#   libclang-dev: bindgen for the V4L2 bindings (v4l)
#   mosquitto: the MQTT broker the publishing fault tests start (crates/mbt-publish/tests)
set -euo pipefail
packages=(pkg-config libasound2-dev libclang-dev mosquitto)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing missing packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
