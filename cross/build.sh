#!/usr/bin/env bash
# Cross-builds the mbtd daemon (release) for a Raspberry Pi or a Jetson on a Debian/Ubuntu
# x86_64 host, installing what is missing first (cross/setup.sh: Rust target, Debian cross gcc,
# the target's libasound2-dev through multiarch, libclang for bindgen, qemu-user).
#
#   cross/build.sh aarch64-unknown-linux-gnu                    # Pi 4/5 (64-bit OS)
#   cross/build.sh armv7-unknown-linux-gnueabihf                # Pi 2-5 with a 32-bit OS
#   cross/build.sh aarch64-unknown-linux-gnu --features cuda    # Jetson (tract-cuda)
#
# Extra arguments go to cargo build. The binary lands in
# $CARGO_TARGET_DIR/<target>/release/mbtd (the shared target dir of scripts/env.sh); a
# `--features cuda` build replaces the plain one there, so copy it away first if you need both.
set -euo pipefail
cd "$(dirname "$0")/.."
source cross/setup.sh "${1:-}"
shift
source scripts/env.sh

echo "cross/build.sh: building mbtd for $TARGET (release) into $CARGO_TARGET_DIR/$TARGET/release" >&2
cargo build --release --locked --target "$TARGET" --config "$CARGO_CROSS_CONFIG" --bin mbtd "$@"

bin="$CARGO_TARGET_DIR/$TARGET/release/mbtd"
stripped="$(mktemp)"
trap 'rm -f "$stripped"' EXIT
"$GNU_TRIPLE-strip" -o "$stripped" "$bin"
echo "cross/build.sh: $bin"
echo "  $(file -b "$bin" | cut -d, -f1-2)"
echo "  $(stat -c %s "$bin") bytes as built, $(stat -c %s "$stripped") bytes stripped ($GNU_TRIPLE-strip)"
