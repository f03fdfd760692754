#!/usr/bin/env bash
# Cross-builds the mbtd daemon (release) for a Raspberry Pi or a Jetson on a Debian/Ubuntu
# x86_64 host, installing what is missing first (cross/setup.sh: Rust target, Debian cross gcc,
# the target's libasound2-dev through multiarch, libclang for bindgen, qemu-user).
#
#   cross/build.sh aarch64-unknown-linux-gnu                    # Pi 4/5 (64-bit OS)
#   cross/build.sh armv7-unknown-linux-gnueabihf                # Pi 2-5 with a 32-bit OS
#   cross/build.sh aarch64-unknown-linux-gnu --features cuda    # Jetson (tract-cuda)
#   cross/build.sh aarch64-unknown-linux-gnu -p mbt-host --bin mbt   # the host tool (personalisation on the board)
#
# Extra arguments go to cargo build. The binary lands in
# $CARGO_TARGET_DIR/<target>/release/mbtd (the shared target dir of scripts/env.sh); a
# `--features cuda` build replaces the plain one there, so copy it away first if you need both.
set -euo pipefail
cd "$(dirname "$0")/.."
source cross/setup.sh "${1:-}"
shift
source scripts/env.sh

# mbtd unless the arguments name the binaries (`-p mbt-host --bin mbt`: the host tool on the board,
# `mbt data import` and `mbt train --init`, personalisation).
bins=()
want=0
for a in "$@"; do
  if [ $want -eq 1 ]; then bins+=("$a"); want=0; fi
  [ "$a" = "--bin" ] && want=1
done
if [ ${#bins[@]} -eq 0 ]; then
  set -- --bin mbtd "$@"
  bins=(mbtd)
fi
echo "cross/build.sh: building ${bins[*]} for $TARGET (release) into $CARGO_TARGET_DIR/$TARGET/release" >&2
cargo build --release --locked --target "$TARGET" --config "$CARGO_CROSS_CONFIG" "$@"

stripped="$(mktemp)"
trap 'rm -f "$stripped"' EXIT
for b in "${bins[@]}"; do
  bin="$CARGO_TARGET_DIR/$TARGET/release/$b"
  "$GNU_TRIPLE-strip" -o "$stripped" "$bin"
  echo "cross/build.sh: $bin"
  echo "  $(file -b "$bin" | cut -d, -f1-2)"
  echo "  $(stat -c %s "$bin") bytes as built, $(stat -c %s "$stripped") bytes stripped ($GNU_TRIPLE-strip)"
done
