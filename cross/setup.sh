#!/usr/bin/env bash
# Installs what cross-building mbt-edge for TARGET needs on a Debian/Ubuntu x86_64 host, only
# what is missing: the Rust target, the Debian cross gcc, the target's alsa-lib (multiarch),
# libclang (bindgen), pkg-config and qemu-user (cross/test.sh). Idempotent; sudo only when not
# root. Sourced by build.sh/test.sh (which then have TARGET, DEB_ARCH, GNU_TRIPLE, QEMU set) or
# run on its own:  cross/setup.sh aarch64-unknown-linux-gnu
set -euo pipefail

TARGET="${1:-}"
case "$TARGET" in
  aarch64-unknown-linux-gnu)     DEB_ARCH=arm64; GNU_TRIPLE=aarch64-linux-gnu;   QEMU=qemu-aarch64 ;;
  armv7-unknown-linux-gnueabihf) DEB_ARCH=armhf; GNU_TRIPLE=arm-linux-gnueabihf; QEMU=qemu-arm ;;
  *)
    echo "usage: $0 aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf" >&2
    echo "  (aarch64: Raspberry Pi 4/5 with a 64-bit OS, Jetson; armv7: 32-bit Raspberry Pi OS)" >&2
    exit 2 ;;
esac
CROSS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CARGO_CROSS_CONFIG="$CROSS_DIR/$TARGET.toml"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

if ! command -v rustup >/dev/null; then
  echo "cross/setup.sh: rustup is needed (https://rustup.rs) to add the $TARGET standard library" >&2
  exit 1
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "cross/setup.sh: rustup target add $TARGET" >&2
  rustup target add "$TARGET"
fi

# The target's alsa-lib comes from the distribution's own archive for that architecture.
added_arch=0
if ! { [ "$(dpkg --print-architecture)" = "$DEB_ARCH" ] || dpkg --print-foreign-architectures | grep -qx "$DEB_ARCH"; }; then
  echo "cross/setup.sh: dpkg --add-architecture $DEB_ARCH" >&2
  $SUDO dpkg --add-architecture "$DEB_ARCH"
  added_arch=1
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
packages=(pkg-config libclang-dev "gcc-$GNU_TRIPLE" "libc6-dev-$DEB_ARCH-cross" "libasound2-dev:$DEB_ARCH" qemu-user)
missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ] || [ $added_arch -eq 1 ]; then
  echo "cross/setup.sh: installing ${missing[*]:-nothing (package lists for $DEB_ARCH only)}" >&2
  # An unreachable mirror for one architecture should not stop the rest: apt-get install below
  # says clearly if a package really cannot be found.
  $SUDO apt-get update -qq || echo "cross/setup.sh: warning: apt-get update reported errors (see above)" >&2
  if [ ${#missing[@]} -gt 0 ]; then
    if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
      echo "cross/setup.sh: could not install ${missing[*]}." >&2
      echo "  On Ubuntu, $DEB_ARCH packages come from ports.ubuntu.com: add a sources entry with" >&2
      echo "  'Architectures: $DEB_ARCH' and restrict the existing ones to amd64, then run this again." >&2
      exit 1
    fi
  fi
fi
